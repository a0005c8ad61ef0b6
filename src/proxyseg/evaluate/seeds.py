"""The headline over seeds: one run's segmentation row is not a finding (the demo's proxies moved by up to
20 F1 points under a float-level change), so the demo's table is read as a mean and range over runs
that differ only in ``seed`` (``proxyseg seeds-table``; docs/usage.md gives the commands).

Reads each run's ``tables/segmentation.tsv`` (and ``tables/fidelity.tsv`` where present) and writes, per
system, corpus and class, the mean, minimum and maximum over the runs. The floors (constant output,
energy threshold) depend on the labels and audio only, so they come out with a range of zero, which is a
check in itself.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Sequence

import pandas as pd

from proxyseg.core.atomic import atomic_open
from proxyseg.core.errors import InputError

KEYS = ["system", "corpus", "class"]


def _seed(results: Path) -> str:
    """The run's seed, from its teacher's or a proxy's training record (a label when neither says)."""
    for record in [results / "teacher" / "train.json", *sorted(results.glob("proxies/*/train.json"))]:
        try:
            return str(json.loads(record.read_text())["seed"])
        except (OSError, ValueError, KeyError):
            continue
    return results.name


def _read(results: Path, table: str, value: str) -> pd.DataFrame:
    path = results / "tables" / table
    if not path.is_file():
        raise InputError(path, "not found: run the workflow into this folder first")
    rows = pd.read_csv(path, sep="\t")
    if "domain" in rows:  # per-domain breakdowns: the corpus totals only
        rows = rows[rows["domain"].isna() | (rows["domain"].astype(str).isin(["", "all"]))]
    missing = set(KEYS + [value]) - set(rows.columns)
    if missing:
        raise InputError(path, f"lacks the columns {sorted(missing)}: is it a proxyseg {table}?")
    return rows[KEYS + [value]]


def over_seeds(runs: Sequence[str | os.PathLike], table: str, value: str) -> pd.DataFrame:
    """Rows ``system, corpus, class, mean, min, max, runs, seeds`` of ``value`` over the runs' ``table``; a
    run that lacks a row the others have is an error naming it (a mean over fewer runs would hide it)."""
    frames, seeds = [], []
    for run in map(Path, runs):
        frames.append(_read(run, table, value))
        seeds.append(_seed(run))
    long = pd.concat(frames, ignore_index=True)
    keys = {tuple(r) for r in frames[0][KEYS].itertuples(index=False)}
    for run, rows in zip(runs, frames):
        other = {tuple(r) for r in rows[KEYS].itertuples(index=False)}
        if other != keys:
            diff = sorted(other ^ keys)[:3]
            raise InputError(Path(run) / "tables" / table, f"has other rows than {runs[0]} (e.g. {diff}): "
                             "compare runs of one configuration that differ only in seed")
    stats = long.groupby(KEYS, sort=False)[value].agg(["mean", "min", "max", "count"]).reset_index()
    stats = stats.rename(columns={"count": "runs"})
    stats["seeds"] = ",".join(seeds)
    return stats


def by_column(long: pd.DataFrame, cell: pd.Series) -> pd.DataFrame:
    """One row per system, one column per "corpus / class", holding ``cell``; rows and columns in the
    order they first appear in ``long`` (the tables' order, not alphabetical)."""
    shown = long.assign(cell=cell, column=long["corpus"] + " / " + long["class"])
    wide = shown.pivot(index="system", columns="column", values="cell")
    return wide.reindex(index=list(dict.fromkeys(long["system"])),
                        columns=list(dict.fromkeys(shown["column"]))).reset_index()


def cells(stats: pd.DataFrame, scale: float, fmt: str) -> pd.DataFrame:
    """``over_seeds``' statistics as "mean (min-max)" cells, one value where all runs agree."""
    def cell(r) -> str:
        if r["min"] == r["max"]:
            return format(scale * r["mean"], fmt)
        return f"{format(scale * r['mean'], fmt)} ({format(scale * r['min'], fmt)}-{format(scale * r['max'], fmt)})"

    return by_column(stats, stats.apply(cell, axis=1))


def seeds_tables(runs: Sequence[str | os.PathLike], out_tsv: str | os.PathLike, out_md: str | os.PathLike) -> pd.DataFrame:
    """Write the long TSV (``metric`` f1 or kappa) and a Markdown page: F1 (%) and, where every run has a
    fidelity table, the proxies' kappa with the teacher, each cell "mean (min-max)"."""
    f1 = over_seeds(runs, "segmentation.tsv", "f1").assign(metric="f1")
    parts = [f1]
    page = [f"Mean (min-max) over {len(runs)} runs (seeds {f1['seeds'].iloc[0]}); one value where all runs agree.\n",
            "F1 (%) per corpus / class on the scored split:\n", cells(f1, 100, ".1f").to_markdown(index=False) + "\n"]
    if all((Path(r) / "tables" / "fidelity.tsv").is_file() for r in runs):
        kappa = over_seeds(runs, "fidelity.tsv", "kappa").assign(metric="kappa")
        parts.append(kappa)
        page += ["Agreement of each proxy with the teacher of its own run (Cohen's kappa):\n",
                 cells(kappa, 1, ".2f").to_markdown(index=False) + "\n"]
    long = pd.concat(parts, ignore_index=True)
    with atomic_open(out_tsv) as f:
        long.to_csv(f, sep="\t", index=False)
    with atomic_open(out_md) as f:
        f.write("\n".join(page))
    return long
