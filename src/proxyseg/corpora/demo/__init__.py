"""Synthetic demo corpora, so the workflow runs end to end without licensed data."""

from proxyseg.corpora.demo.corpus import build_demo_corpus

__all__ = ["build_demo_corpus"]
