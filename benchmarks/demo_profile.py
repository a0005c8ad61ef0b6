"""Where a workflow run's time went: each stage's wall and CPU, the idle share of the cores, the critical path.

    python benchmarks/demo_profile.py                         # the newest log of ./.snakemake/log, results/
    python benchmarks/demo_profile.py --log .snakemake/log/X.snakemake.log --results results-test --cores 2

Reads the Snakemake log (a timestamp before each job's start and its "Finished jobid" line) and the
benchmark records under ``<results>/benchmarks/`` (``cpu_time`` and ``max_rss`` per job; rules without a
``benchmark:`` directive have wall times only). The critical path is traced backwards from the job that
finished last: each step is the job that finished latest before the current one started (a job waits
for its inputs, so on a machine without idle cores this is the chain that set the run's length).
"""

from __future__ import annotations

import argparse
import re
from datetime import datetime
from pathlib import Path

import pandas as pd

STAMP = re.compile(r"^\[(\w{3} \w{3} +\d+ \d\d:\d\d:\d\d \d{4})\]$")
START = re.compile(r"^(?:local)?rule (\w+):$")
JOBID = re.compile(r"^\s+jobid: (\d+)$")
FINISHED = re.compile(r"^Finished jobid: (\d+) \(Rule: (\w+)\)$")
WILDCARDS = re.compile(r"^\s+wildcards: (.*)$")


def parse_log(path: Path) -> pd.DataFrame:
    """One row per job: ``jobid, rule, wildcards, start, end`` (datetimes)."""
    jobs: dict[int, dict] = {}
    stamp, pending = None, None
    for line in path.read_text(errors="replace").splitlines():
        if m := STAMP.match(line):
            stamp = datetime.strptime(" ".join(m.group(1).split()), "%a %b %d %H:%M:%S %Y")
        elif m := START.match(line):
            pending = {"rule": m.group(1), "start": stamp, "wildcards": ""}
        elif pending is not None and (m := WILDCARDS.match(line)):
            pending["wildcards"] = m.group(1)
        elif pending is not None and (m := JOBID.match(line)):
            jobs[int(m.group(1))] = pending
            pending = {**pending}  # wildcards may follow the jobid line
            jobs[int(m.group(1))] = pending
        elif m := FINISHED.match(line):
            if int(m.group(1)) in jobs:
                jobs[int(m.group(1))]["end"] = stamp
            pending = None
    df = pd.DataFrame([{"jobid": k, **v} for k, v in jobs.items()])
    return df.dropna(subset=["start", "end"]) if len(df) else df


def read_benchmarks(results: Path) -> pd.DataFrame:
    """CPU seconds and peak memory per rule, summed (max for memory) over its benchmark files."""
    rows = []
    for f in sorted((results / "benchmarks").rglob("*.tsv")):
        rel = f.relative_to(results / "benchmarks")
        rule = rel.parts[0].removesuffix(".tsv")
        b = pd.read_csv(f, sep="\t")
        rows.append({"rule": rule, "cpu_s": float(b["cpu_time"].iloc[-1]), "max_rss_mb": float(b["max_rss"].iloc[-1])})
    if not rows:
        return pd.DataFrame(columns=["rule", "cpu_s", "max_rss_mb"])
    return pd.DataFrame(rows).groupby("rule").agg(cpu_s=("cpu_s", "sum"), max_rss_mb=("max_rss_mb", "max"))


def critical_path(jobs: pd.DataFrame) -> list[dict]:
    """Backwards from the last job to finish: each step the job that finished last before it started."""
    path, seen = [], set()
    current = jobs.loc[jobs["end"].idxmax()]
    while current is not None:
        path.append(current)
        seen.add(current.name)  # a job of 0 s (start == end in the log's whole seconds) ends "before" itself
        before = jobs[(jobs["end"] <= current["start"]) & ~jobs.index.isin(seen)]
        current = before.loc[before["end"].idxmax()] if len(before) else None
    return [dict(p) for p in reversed(path)]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--log", type=Path, help="a Snakemake log (default: the newest in .snakemake/log)")
    ap.add_argument("--results", type=Path, default=Path("results"))
    ap.add_argument("--cores", type=int, default=2)
    a = ap.parse_args(argv)
    log = a.log or max(Path(".snakemake/log").glob("*.snakemake.log"), key=lambda p: p.stat().st_mtime)
    jobs = parse_log(log)
    if jobs.empty:
        raise SystemExit(f"{log}: no finished job found")
    jobs["wall_s"] = (jobs["end"] - jobs["start"]).dt.total_seconds()
    wall = (jobs["end"].max() - jobs["start"].min()).total_seconds()
    stages = jobs.groupby("rule").agg(jobs=("jobid", "size"), wall_s=("wall_s", "sum"), longest_s=("wall_s", "max"))
    stages = stages.join(read_benchmarks(a.results), how="left")
    cpu = stages["cpu_s"].sum()
    stages["wall_share"] = stages["wall_s"] / stages["wall_s"].sum()
    stages["cpu_share"] = stages["cpu_s"] / cpu if cpu > 0 else float("nan")
    stages = stages.sort_values("wall_s", ascending=False)
    print(f"log: {log}\nresults: {a.results}\njobs: {len(jobs)}; wall {wall:.0f} s ({wall / 60:.1f} min) on "
          f"{a.cores} cores; CPU recorded by benchmarks {cpu:.0f} s; idle share of the cores at most "
          f"{max(0.0, 1 - cpu / (wall * a.cores)):.0%} (rules without a benchmark count as idle)\n")
    print(stages.to_markdown(floatfmt=".2f"))
    print("\ncritical path (start, wall s, rule, wildcards):")
    t0 = jobs["start"].min()
    for step in critical_path(jobs):
        print(f"  +{(step['start'] - t0).total_seconds():6.0f} s  {step['wall_s']:6.0f} s  {step['rule']}  "
              f"{step['wildcards']}")


if __name__ == "__main__":
    main()
