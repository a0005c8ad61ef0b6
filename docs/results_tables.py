#!/usr/bin/env python3
"""Fill docs/results.md's tables from run folders, so that its numbers come from runs, not from hand copies.

docs/results.md keeps its prose by hand; each table sits between two markers that name what fills it::

    <!-- fill: stamp demo -->          ... <!-- /fill -->   commit, machine and date of run "demo"
    <!-- fill: segmentation demo -->   ... <!-- /fill -->   F1 (%) with the floors (tables/segmentation.tsv)
    <!-- fill: fidelity demo -->       ... <!-- /fill -->   agreement F1 and kappa per corpus (tables/fidelity.tsv)
    <!-- fill: agreement silero -->    ... <!-- /fill -->   per set of held-back audio: minutes, rates, F1, kappa
    <!-- fill: verdicts demo -->       ... <!-- /fill -->   faithfulness verdicts (tables/faithfulness.tsv)
    <!-- fill: seeds demo -->          ... <!-- /fill -->   mean (min-max) over the runs given to --seeds
    <!-- fill: profile demo -->        ... <!-- /fill -->   benchmarks/demo_profile.py on the run's last log

Runs are named on the command line; a run is a results folder inside a git checkout (the commit is that
checkout's HEAD, marked "+ local changes" when tracked files differ)::

    python docs/results_tables.py --run demo=../demo/results --run silero=../s/results-explain-silero \\
        --seeds demo=../demo/results,../demo/results-seed1,../demo/results-seed2
    python docs/results_tables.py ... --check     # exit 1 if docs/results.md differs from what the runs give

A block whose run is not given is left as it is (and listed), so one run can be refreshed at a time.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from proxyseg.evaluate.seeds import by_column, cells, over_seeds

REPO = Path(__file__).resolve().parent.parent
PAGE = REPO / "docs" / "results.md"
BLOCK = re.compile(r"^<!-- fill: (\w+) ([\w-]+) -->\n(.*?)^<!-- /fill -->$", re.M | re.S)
FLOORS = ("constant output", "energy threshold")


class FillError(Exception):
    """A marker or a run that cannot be filled: the message names the page's line or the run's file."""


def _table(run: Path, name: str) -> pd.DataFrame:
    path = run / "tables" / name
    if not path.is_file():
        raise FillError(f"{path}: missing; run the workflow to its end (snakemake --configfile ...) first")
    return pd.read_csv(path, sep="\t", keep_default_na=False, na_values=[""])


def _wide(long: pd.DataFrame, value: str, fmt) -> pd.DataFrame:
    return by_column(long, long[value].map(fmt))


def _pct(x: float) -> str:
    return "–" if pd.isna(x) else f"{100 * x:.1f}"


def _kappa(x: float) -> str:
    return "–" if pd.isna(x) else f"{x:.2f}"


def stamp(run: Path, machine: str | None) -> str:
    """Which commit, machine and date the run's tables come from."""
    tables = sorted((run / "tables").glob("*.tsv"))
    if not tables:
        raise FillError(f"{run / 'tables'}: no tables; run the workflow to its end first")
    when = datetime.fromtimestamp(max(t.stat().st_mtime for t in tables), timezone.utc)
    git = ["git", "-C", str(run)]
    try:
        commit = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                check=True).stdout.strip()
        dirty = subprocess.run([*git, "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                               text=True, check=True).stdout.strip()
    except (subprocess.CalledProcessError, FileNotFoundError):
        raise FillError(f"{run}: not inside a git checkout, so its commit is unknown; run from a clone") from None
    machine = machine or f"{_cpu()}, {os.cpu_count()} cores ({platform.system()})"
    return (f"*Run `{run.name}`: commit {commit}{' + local changes' if dirty else ''}; {machine}; tables "
            f"written {when:%Y-%m-%d %H:%M} UTC.*")


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def segmentation(run: Path) -> str:
    """F1 (%) per corpus / class; the floors' rows last, in italics."""
    long = _table(run, "segmentation.tsv")
    wide = _wide(long, "f1", _pct)
    wide["system"] = [f"*{s}*" if s in FLOORS else s for s in wide["system"]]
    return wide.to_markdown(index=False, disable_numparse=True)


def fidelity(run: Path) -> str:
    """Agreement of each proxy's decisions with its teacher's on the scored split: frame F1 (%) and kappa."""
    long = _table(run, "fidelity.tsv")
    scored = _table(run, "segmentation.tsv")[["corpus", "class"]].drop_duplicates()
    long = long.merge(scored, on=["corpus", "class"])  # the classes each scored corpus annotates
    long = long[~long["system"].isin(FLOORS)]
    f1, kappa = _wide(long, "fidelity_f1", _pct), _wide(long, "kappa", _kappa)
    cells = f1.copy()
    for column in f1.columns[1:]:
        cells[column] = f1[column] + " / " + kappa[column]
    return "F1 (%) / kappa:\n\n" + cells.to_markdown(index=False, disable_numparse=True)


def _agree(r) -> float:
    """The share of frames where the two decide alike, from kappa and both rates (kappa is 0 or undefined
    where the teacher never decides the class, but the share still counts the system's false alarms)."""
    t, q = r["teacher_positive_rate"], r["proxy_positive_rate"]
    chance = t * q + (1 - t) * (1 - q)
    return 1.0 if chance == 1 else chance + (0.0 if pd.isna(r["kappa"]) else r["kappa"]) * (1 - chance)


def agreement(run: Path) -> str:
    """Per set (corpus, or corpus:split) and class where the teacher or a system decides the class at all:
    minutes, how often the teacher and each system decide it, agreement F1, kappa and the frames alike."""
    long = _table(run, "fidelity.tsv").dropna(subset=["teacher_positive_rate"])
    decided = long.groupby(["corpus", "class"], sort=False)[["teacher_positive_rate", "proxy_positive_rate"]] \
        .transform("max").max(axis=1)
    rows = []
    for (corpus, cls), part in long[decided > 0].groupby(["corpus", "class"], sort=False):
        first = part.iloc[0]
        row = {"set": corpus, "class": cls, "minutes": f"{first['minutes']:.1f}",
               "teacher %": _pct(first["teacher_positive_rate"])}
        for _, r in part.iterrows():
            row[f"{r['system']}: % / F1 / kappa / alike %"] = (
                f"{_pct(r['proxy_positive_rate'])} / {_pct(r['fidelity_f1'])} / {_kappa(r['kappa'])} / {_pct(_agree(r))}")
        rows.append(row)
    return pd.DataFrame(rows).to_markdown(index=False, disable_numparse=True)


def verdicts(run: Path) -> str:
    """Per proxy and class: the verdict, and the judge's logit drop at 50 % of the energy for the explanation
    against the energy-matched random active atoms and the strongest baseline."""
    long = _table(run, "faithfulness.tsv")
    rows = []
    for (system, cls), part in long.groupby(["system", "class"], sort=False):
        drop = part.set_index("removal")["logit_drop_50"]
        others = drop.drop(["explanation", "random_active"], errors="ignore")
        best = others.idxmax() if len(others.dropna()) else None
        rows.append({"proxy": system, "class": cls, "segments": int(part["segments"].iloc[0]),
                     "explanation": f"{drop.get('explanation', float('nan')):.2f}",
                     "random active": f"{drop.get('random_active', float('nan')):.2f}",
                     "strongest other": f"{best} {drop[best]:.2f}" if best else "–",
                     "verdict": part["verdict"].iloc[0]})
    return ("Judge's logit drop at 50 % of the energy removed, and the verdict:\n\n"
            + pd.DataFrame(rows).to_markdown(index=False, disable_numparse=True))


def seeds(runs: list[Path]) -> str:
    """F1 (%) mean (min-max) over runs that differ only in seed (proxyseg.evaluate.seeds)."""
    stats = over_seeds(runs, "segmentation.tsv", "f1")
    return (f"Mean (min-max) over {len(runs)} runs, seeds {stats['seeds'].iloc[0]}:\n\n"
            + cells(stats, 100, ".1f").to_markdown(index=False, disable_numparse=True))


def profile(run: Path) -> str:
    """benchmarks/demo_profile.py on the newest Snakemake log of the run's checkout that wrote this folder."""
    writes = re.compile(rf"(?<![\w.-]){re.escape(run.name)}/")
    logs = [log for log in sorted((run.parent / ".snakemake" / "log").glob("*.snakemake.log"))
            if writes.search(log.read_text(errors="replace"))]
    if not logs:
        raise FillError(f"{run.parent / '.snakemake' / 'log'}: no Snakemake log that writes {run.name}/")
    out = subprocess.run([sys.executable, str(REPO / "benchmarks" / "demo_profile.py"), "--log", str(logs[-1]),
                          "--results", str(run)], capture_output=True, text=True)
    if out.returncode:
        raise FillError(f"benchmarks/demo_profile.py on {logs[-1]} failed:\n{out.stderr}")
    return "```\n" + out.stdout.strip().replace(f"{run.parent}/", "") + "\n```"


FILLERS = {"segmentation": segmentation, "fidelity": fidelity, "agreement": agreement, "verdicts": verdicts,
           "profile": profile}


def fill(page: str, runs: dict[str, Path], seed_runs: dict[str, list[Path]], machine: str | None = None
         ) -> tuple[str, list[str]]:
    """The page with every block whose run is given filled in, and the blocks left as they were."""
    left: list[str] = []

    def replace(m: re.Match) -> str:
        kind, name = m.group(1), m.group(2)
        line = page.count("\n", 0, m.start()) + 1
        if kind == "seeds":
            if name not in seed_runs:
                left.append(f"line {line}: seeds {name}")
                return m.group(0)
            body = seeds(seed_runs[name])
        elif kind == "stamp" or kind in FILLERS:
            if name not in runs:
                left.append(f"line {line}: {kind} {name}")
                return m.group(0)
            body = stamp(runs[name], machine) if kind == "stamp" else FILLERS[kind](runs[name])
        else:
            raise FillError(f"docs/results.md line {line}: unknown block '{kind}'; "
                            f"known: stamp, seeds, {', '.join(FILLERS)}")
        return f"<!-- fill: {kind} {name} -->\n{body}\n<!-- /fill -->"

    return BLOCK.sub(replace, page), left


def _named(values: list[str], flag: str) -> dict[str, str]:
    named = {}
    for value in values:
        name, sep, path = value.partition("=")
        if not sep or not name or not path:
            raise FillError(f"{flag} {value}: expected NAME=PATH")
        named[name] = path
    return named


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", action="append", default=[], metavar="NAME=RESULTS",
                        help="a run's results folder, named as in the page's markers")
    parser.add_argument("--seeds", action="append", default=[], metavar="NAME=RESULTS,RESULTS,...",
                        help="results folders of runs that differ only in seed")
    parser.add_argument("--machine", help="how to describe the machine (default: this machine's CPU)")
    parser.add_argument("--page", type=Path, default=PAGE)
    parser.add_argument("--check", action="store_true", help="exit 1 if the page differs from what the runs give")
    args = parser.parse_args(argv)
    try:
        runs = {k: Path(v).resolve() for k, v in _named(args.run, "--run").items()}
        seed_runs = {k: [Path(p).resolve() for p in v.split(",")] for k, v in _named(args.seeds, "--seeds").items()}
        old = args.page.read_text()
        new, left = fill(old, runs, seed_runs, args.machine)
    except FillError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for block in left:
        print(f"left as it is ({block}): no run given", file=sys.stderr)
    if args.check:
        if new != old:
            print(f"{args.page} differs from what the runs give; run without --check", file=sys.stderr)
            return 1
        return 0
    tmp = args.page.with_name(args.page.name + '.tmp')
    tmp.write_text(new)
    os.replace(tmp, args.page)
    return 0


if __name__ == "__main__":
    sys.exit(main())
