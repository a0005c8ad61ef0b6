"""Markdown tables of a run's faithfulness summary, for docs/results.md: one table per headline metric
(systems x classes, value and 95 % bootstrap interval) and a verdict per system and class.

A proxy trained at another seed is an entry named ``<variant>_seed<N>`` (examples/faithfulness_seeds.yaml);
its rows sit under the variant's, so that the two seeds read side by side.

    python benchmarks/faithfulness_report.py results/tables/faithfulness_summary.tsv

The verdicts are :func:`proxyseg.explain.faithfulness.verdicts` (docs/method.md §7), as in the run's
``tables/faithfulness.md``.
"""

from __future__ import annotations

import argparse
import re
import sys

import pandas as pd

from proxyseg.explain.faithfulness import verdicts

HEADLINE = ["auc_gap_random_active", "auc_gap_loudest", "auc_gap_other_class", "ratio_to_saliency_25",
            "ratio_to_saliency_50", "oracle_share", "flip_rate_50", "proxy_sanity", "AI", "AD", "fid_in"]
CLASS_ORDER = ["speech", "noise", "music", "overlap"]


def _variant(system: str) -> tuple[str, int]:
    m = re.fullmatch(r"(.+)_seed(\d+)", system)
    return (m.group(1), int(m.group(2))) if m else (system, 0)


def _cell(row) -> str:
    if pd.isna(row["value"]):
        return "–"
    if pd.isna(row["ci_low"]):
        return f"{row['value']:.2f}"
    return f"{row['value']:.2f} [{row['ci_low']:.2f}, {row['ci_high']:.2f}]"


def tables(summary: pd.DataFrame, metrics=HEADLINE) -> str:
    summary = summary.copy()
    summary["variant"], summary["seed"] = zip(*summary["system"].map(_variant))
    classes = [c for c in CLASS_ORDER if c in set(summary["class"])]
    systems = sorted(set(summary["system"]), key=_variant)
    parts = []
    for metric in metrics:
        rows = summary[summary["metric"] == metric]
        if rows.empty:
            continue
        n = rows.groupby("class")["segments"].max().reindex(classes)
        head = " | ".join(f"{c} (n={int(v) if pd.notna(v) else 0})" for c, v in n.items())
        lines = [f"`{metric}`", "", f"| proxy | seed | {head} |", "|:--|--:|" + "--:|" * len(classes)]
        for system in systems:
            r = rows[rows["system"] == system].set_index("class")
            if r.empty:
                continue
            variant, seed = _variant(system)
            cells = [_cell(r.loc[c]) if c in r.index else "–" for c in classes]
            lines.append(f"| {variant} | {seed} | " + " | ".join(cells) + " |")
        parts.append("\n".join(lines))
    v = verdicts(summary)
    v["variant"], v["seed"] = zip(*v["system"].map(_variant))
    grid = v.pivot_table(index=["variant", "seed"], columns="class", values="verdict", aggfunc="first")
    grid = grid.reindex(columns=classes)
    lines = ["verdict", "", "| proxy | seed | " + " | ".join(classes) + " |", "|:--|--:|" + "--|" * len(classes)]
    for (variant, seed), r in grid.iterrows():
        lines.append(f"| {variant} | {seed} | " + " | ".join(str(x) for x in r.values) + " |")
    parts.append("\n".join(lines))
    return "\n\n".join(parts) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("summary", help="tables/faithfulness_summary.tsv of a run")
    ap.add_argument("--metrics", nargs="+", default=HEADLINE)
    args = ap.parse_args(argv)
    summary = pd.read_csv(args.summary, sep="\t")
    sys.stdout.write(tables(summary, args.metrics))
    return 0


if __name__ == "__main__":
    sys.exit(main())
