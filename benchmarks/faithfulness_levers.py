"""Faithfulness of explanation variants ("levers") on a finished run, without rerunning the workflow: for
each proxy and each variant (settings of ``explain`` and ``faithfulness`` laid over the run's), the
faithfulness test of :mod:`proxyseg.explain.faithfulness` on one split, and one summary table with every
variant's rows (``system`` = ``<proxy>/<variant>``) and the verdicts.

Choose the split to compare levers on before looking at scores (``dev``: the test split stays for the one
reading of the chosen variant). On a split where the judge left no inference file (the demo teacher is run
on the scored split only), segments are drawn where the labels have the class; the judge's own decisions
still decide which frames count.

    python benchmarks/faithfulness_levers.py --results results --split dev --segments 20 \\
        --variant paper='{}' --variant occlusion='{"explain": {"relevance": "occlusion"}}' \\
        --out /tmp/levers.tsv

The judge is the run's teacher (``--judge teacher``: results/teacher/model.pt with the demo WavLM) or a
black box (``--judge silero`` / ``pyannote``). The judge's part of every segment is computed once
(``<out>.judge.h5``) and shared by every proxy and variant. ``--jobs`` runs proxies x variants in parallel
processes (one thread each).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path


def _items(results: Path, proxy: str, split: str, corpora) -> list[tuple]:
    out = []
    for corpus in corpora:
        judged = results / "inference" / "teacher" / corpus / f"{split}.h5"
        decisions = judged if judged.exists() else results / "labels" / corpus / split / "targets.h5"
        stems = results / "corpora" / corpus / "stems"
        out.append((corpus, str(results / "inference" / proxy / corpus / f"{split}.h5"),
                    str(results / "spectrograms" / corpus / f"{split}.h5"), str(decisions),
                    str(results / "labels" / corpus / split / "manifest.tsv"), str(stems) if stems.is_dir() else "-"))
    return out


def _judge(results: Path, kind: str):
    from proxyseg.explain.judges import BlackBoxJudge, TeacherJudge

    if kind != "teacher":  # a pyannote checkpoint the workflow fetched sits in results/models/teacher
        local = results / "models" / "teacher" / "pytorch_model.bin"
        return BlackBoxJudge(kind, str(local) if local.exists() else None)
    features = sorted((results / "features").glob("*/train.h5"))[0]
    return TeacherJudge(results / "teacher" / "model.pt", str(results / "models" / "wavlm-demo"), features)


def _run(job):
    import torch

    torch.set_num_threads(1)
    from proxyseg.explain.faithfulness import faithfulness_rows

    results, proxy, name, variant, items, judge_kind, settings, shared, seed = job
    results = Path(results)
    explain = {"tau": 0.5, **variant.get("explain", {})}
    curves, segments = faithfulness_rows(results / "proxies" / proxy / "model.pt", items, _judge(results, judge_kind),
                                         {**settings, **variant.get("faithfulness", {})}, seed, f"{proxy}/{name}",
                                         explain, shared=shared)
    return curves, segments


HEAD = ["auc_gap_random_active", "ratio_to_saliency_50", "flip_rate_50", "proxy_sanity", "AI", "AD", "fid_in"]
CLASS_ORDER = ["speech", "noise", "music", "overlap"]


def markdown(summary) -> str:
    """One row per proxy, variant and class: the headline metrics (value and 95 % interval) and the verdict."""
    from proxyseg.explain.faithfulness import verdicts

    verdict = verdicts(summary).set_index(["system", "class"])["verdict"]
    by = summary.set_index(["system", "class", "metric"])
    lines = ["| proxy | variant | class | n | " + " | ".join(HEAD) + " | verdict |",
             "|:--|:--|:--|--:|" + "--:|" * len(HEAD) + ":--|"]
    systems = sorted(set(summary["system"]), key=lambda sy: (sy.split("/")[0], sy.split("/")[-1] != "paper", sy))
    for system in systems:
        proxy, _, variant = system.partition("/")
        for cls in [c for c in CLASS_ORDER if (system, c) in verdict.index]:
            cells, n = [], 0
            for m in HEAD:
                if (system, cls, m) not in by.index:
                    cells.append("–")
                    continue
                r = by.loc[(system, cls, m)]
                n = max(n, int(r["segments"]))
                fmt = ".0f" if m in ("AI", "AD") else ".2f"
                cells.append("–" if r["value"] != r["value"] else
                             f"{r['value']:{fmt}} [{r['ci_low']:{fmt}}, {r['ci_high']:{fmt}}]")
            lines.append(f"| {proxy} | {variant or '-'} | {cls} | {n} | " + " | ".join(cells) + f" | {verdict[(system, cls)]} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--results", type=Path, help="the run folder (required unless --markdown)")
    ap.add_argument("--proxies", default="", help="comma-separated (default: every folder of results/proxies)")
    ap.add_argument("--corpora", default="", help="comma-separated (default: every corpus with the split)")
    ap.add_argument("--split", default="dev")
    ap.add_argument("--judge", default="teacher", choices=["teacher", "silero", "pyannote"])
    ap.add_argument("--segments", type=int, default=20)
    ap.add_argument("--energy-levels", default="0.25,0.5")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--variant", action="append", default=[], metavar="NAME=JSON")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--out", type=Path, help="the summary table (.tsv); curves beside it")
    ap.add_argument("--markdown", nargs="+", type=Path, metavar="SUMMARY",
                    help="print the summaries written by earlier runs as one markdown table, and stop")
    a = ap.parse_args(argv)
    if a.markdown:
        import pandas as pd

        sys.stdout.write(markdown(pd.concat([pd.read_csv(p, sep="\t") for p in a.markdown], ignore_index=True)))
        return 0
    if a.out is None or a.results is None:
        ap.error("--results and --out are required")
    a.out = a.out.resolve()
    a.results = a.results.resolve()
    os.chdir(a.results.parent)  # the manifests name the audio relative to the run's working directory
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    import pandas as pd

    from proxyseg.explain.faithfulness import faithfulness_summary, verdicts, write_judge_baselines

    proxies = a.proxies.split(",") if a.proxies else sorted(p.name for p in (a.results / "proxies").iterdir())
    corpora = a.corpora.split(",") if a.corpora else sorted(
        p.name for p in (a.results / "spectrograms").iterdir() if (p / f"{a.split}.h5").exists())
    variants = dict(v.split("=", 1) for v in a.variant) or {"paper": "{}"}
    variants = {k: json.loads(v) for k, v in variants.items()}
    settings = {"segments": a.segments, "energy_levels": [float(v) for v in a.energy_levels.split(",")]}
    shared = a.out.with_suffix(".judge.h5")
    if not shared.exists():
        n = write_judge_baselines(_items(a.results, proxies[0], a.split, corpora), _judge(a.results, a.judge), shared,
                                  settings, a.seed)
        logging.info("the judge's part of %d segments -> %s", n, shared)
    jobs = [(str(a.results), p, name, v, _items(a.results, p, a.split, corpora), a.judge, settings, str(shared), a.seed)
            for p in proxies for name, v in variants.items()]
    with ProcessPoolExecutor(max_workers=a.jobs) as pool:
        parts = list(pool.map(_run, jobs))
    curves = pd.concat([c for c, _ in parts], ignore_index=True)
    segments = pd.concat([s for _, s in parts], ignore_index=True)
    summary = faithfulness_summary(curves, segments, seed=a.seed)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    summary.to_csv(a.out, sep="\t", index=False)
    curves.to_csv(a.out.with_suffix(".curves.tsv"), sep="\t", index=False)
    segments.to_csv(a.out.with_suffix(".segments.tsv"), sep="\t", index=False)
    head = HEAD
    show = summary[summary["metric"].isin(head)].copy()
    show["cell"] = [f"{v:.2f} [{lo:.2f},{hi:.2f}]" for v, lo, hi in zip(show["value"], show["ci_low"], show["ci_high"])]
    wide = show.pivot_table(index=["system", "class"], columns="metric", values="cell", aggfunc="first")
    print(wide.reindex(columns=[h for h in head if h in wide.columns]).to_string())
    print(verdicts(summary).to_string(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
