"""The one reader of the teacher dump's layout (``docs/outputs.md``): which groups are URIs and which classes
the teacher knows. Kept light (h5py and the standard library: no torch) and apart from the code that writes
dumps, so the dictionary, the proxies and the scores read dumps without importing a teacher."""

from __future__ import annotations

import json

import h5py

from proxyseg.core.frames import CLASSES

__all__ = ["dump_groups", "known_classes"]


def dump_groups(handle: h5py.File) -> dict[str, h5py.Group]:
    """The URI groups of a teacher dump: every group that holds a ``logits`` dataset, by full name."""
    out: dict[str, h5py.Group] = {}

    def visit(name, obj):
        if isinstance(obj, h5py.Group) and isinstance(obj.get("logits"), h5py.Dataset):
            out[name] = obj

    handle.visititems(visit)
    return out


def known_classes(handle) -> tuple[str, ...]:
    """The classes a dump (or an inference file made from one) knows: its ``known_classes`` attribute, else
    all four (the workflow's own teacher)."""
    raw = handle.attrs.get("known_classes")
    return tuple(json.loads(raw)) if raw is not None else CLASSES
