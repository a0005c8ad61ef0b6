"""Result tables: long TSV for machines, Markdown for people, both written atomically."""

from __future__ import annotations

import os

import pandas as pd

from proxyseg.core.atomic import atomic_open


def write_table(df: pd.DataFrame, tsv: str | os.PathLike, md: str | os.PathLike | None = None,
                floatfmt: str = ".3f") -> None:
    with atomic_open(tsv) as f:
        df.to_csv(f, sep="\t", index=False)
    if md is not None:
        with atomic_open(md) as f:
            f.write(df.to_markdown(index=False, floatfmt=floatfmt) + "\n")


def class_hours_table(inputs: list[str], out_tsv, out_md) -> pd.DataFrame:
    """Annotated hours per corpus, split and class ("n/a" where the corpus does not annotate the class)."""
    long = pd.concat([pd.read_csv(p, sep="\t") for p in inputs], ignore_index=True)
    wide = long.pivot_table(index=["corpus", "split"], columns="class", values="hours", sort=False, dropna=False)
    wide = wide.reindex(columns=[c for c in long["class"].unique()])
    totals = long.groupby(["corpus", "split"], sort=False)[["scored_hours", "files"]].first()
    wide = wide[wide.index.isin(totals.index)]  # pivot_table crosses every corpus with every split
    wide = wide.join(totals).reset_index()
    with atomic_open(out_tsv) as f:
        long.to_csv(f, sep="\t", index=False)
    shown = wide.copy()
    for c in long["class"].unique():
        shown[c] = shown[c].map(lambda h: "n/a" if pd.isna(h) else f"{h:.3f}")
    with atomic_open(out_md) as f:
        f.write("Annotated hours per class inside the scored regions (n/a: class not annotated by the corpus).\n\n")
        f.write(shown.to_markdown(index=False, floatfmt=".3f") + "\n")
    return wide
