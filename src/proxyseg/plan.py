"""What the workflow runs, decided from the config (workflow/rules/common.smk keeps only paths, targets and
wildcards and calls these).

:func:`fill` gives every settings section its defaults through its class (:mod:`proxyseg.settings`), so
the rules, the report captions and the stages see the same complete values; :func:`proxy_settings`,
:func:`nmf_settings` and :func:`nmf_variants` decide what each proxy is trained with and which NMF
dictionary it shares; the ``check_*`` functions refuse a config that cannot run, naming the key.
Kept light (no torch): the Snakefile imports it at parse time.
"""

from __future__ import annotations

import os

from proxyseg import settings as S
from proxyseg.core.errors import InputError

__all__ = ["check_corpora", "demo_pretrain", "fill", "generated_folder", "nmf_settings", "nmf_variant", "nmf_variants",
           "proxy_settings", "with_results"]

def _parse(cls, values, where):
    moved = [(f"{where}.{k}", S.MOVED[f"{cls.SECTION}.{k}"]) for k in (values or {}) if f"{cls.SECTION}.{k}" in S.MOVED]
    if moved:
        raise InputError(None, "; ".join(f"config {old} is now {new}" for old, new in moved))
    return cls.parse(values, f"config {where}")


def proxy_settings(config: dict, name: str) -> dict:
    """``proxy_defaults`` overridden by the proxy's own entry, defaults filled in; its ``nmf`` overrides
    choose its dictionary (:func:`nmf_settings`) and are not training settings."""
    entry = {k: v for k, v in config["proxies"][name].items() if k != "nmf"}
    _parse(S.Proxy, entry, f"proxies.{name}")
    return _parse(S.Proxy, {**config.get("proxy_defaults", {}), **entry}, f"proxies.{name}").as_dict()


def fill(config: dict) -> dict:
    """``config`` with every settings section complete (defaults filled in, values checked and typed) and
    every proxy entry complete; a bad value is an ``InputError`` naming its key."""
    out = dict(config)
    for name, cls in S.SECTIONS.items():
        out[name] = _parse(cls, config.get(name) or {}, name).as_dict()
    out["mixes"] = {name: {"sources": entry.get("sources"),
                           **_parse(S.Mix, {k: v for k, v in entry.items() if k != "sources"}, f"mixes.{name}").as_dict()}
                    for name, entry in (config.get("mixes") or {}).items()}
    proxies = config.get("proxies") or {}
    if "teacher" in proxies:
        raise InputError(None, "config proxies: 'teacher' is reserved for the teacher; rename that proxy")
    out["proxies"] = {}
    for name, entry in proxies.items():
        nmf = (entry or {}).get("nmf")
        if nmf:
            _parse(S.NMF, nmf, f"proxies.{name}.nmf")
        out["proxies"][name] = {**proxy_settings({**out, "proxies": {name: entry or {}}}, name),
                                **({"nmf": nmf} if nmf else {})}
    return out


def nmf_settings(config: dict, training_corpora: list[str], proxy: str | None = None) -> dict:
    """The nmf section with a proxy's ``nmf`` overrides; ``corpora`` (whose train split feeds the
    dictionary) defaults to the training corpora."""
    merged = {**config["nmf"], **((config["proxies"][proxy].get("nmf") or {}) if proxy else {})}
    merged = _parse(S.NMF, merged, f"proxies.{proxy}.nmf" if proxy else "nmf").as_dict()
    merged["corpora"] = merged["corpora"] or list(training_corpora)
    return merged


def nmf_variants(config: dict, training_corpora: list[str], corpora: dict) -> dict[str, dict]:
    """Dictionaries besides the global one: proxies whose ``nmf`` overrides change the settings (ablations
    of K, mu, the corpora); proxies with the same settings share one variant, named after the first of
    them in name order."""
    variants: dict[str, dict] = {}
    default = nmf_settings(config, training_corpora)
    for name in sorted(config["proxies"]):
        mine = nmf_settings(config, training_corpora, name)
        if config["proxies"][name].get("nmf") and mine != default and mine not in variants.values():
            variants[name] = mine
    for variant, st in variants.items():
        for c in st["corpora"]:
            if c not in corpora or "train" not in corpora[c]["splits"]:
                raise InputError(None, f"config proxies.{variant}.nmf.corpora: {c!r} is not a corpus with a train split")
    return variants


def nmf_variant(variants: dict[str, dict], settings: dict) -> str:
    """The variant with ``settings`` ('' for the global dictionary)."""
    return next((v for v, st in variants.items() if st == settings), "")


def demo_pretrain(features: dict) -> dict:
    """features.demo_pretrain, with no steps unless the model is ``demo`` (``untrained-demo``, a real
    WavLM: nothing to pre-train)."""
    steps = features["demo_pretrain"]["steps"] if features["model"] == "demo" else 0
    return {**features["demo_pretrain"], "steps": steps}


def with_results(value, results: str):
    """Corpus paths may say {results} for the results folder (where the demo corpora are generated)."""
    if isinstance(value, str):
        return value.replace("{results}", results)
    if isinstance(value, dict):
        return {k: with_results(v, results) for k, v in value.items()}
    return value


def generated_folder(path, results: str, names) -> str | None:
    """The corpus folder among ``results/corpora/<name>`` (a directory output of a demo or mixing job)
    that holds ``path``, or None when no job of the workflow writes it."""
    path = os.path.normpath(str(path))
    for name in names:
        folder = os.path.normpath(os.path.join(results, "corpora", name))
        if path == folder or path.startswith(folder + os.sep):
            return folder
    return None


def check_corpora(corpora: dict, training_corpora: list[str], agreement_splits: list[str] = (),
                  scored_split: str | None = None, explain_splits: list[str] = ()) -> None:
    """Label maps with string keys; training corpora that exist and have train and dev splits; a scored
    split, agreement splits and explained splits that some corpus has (a typo would otherwise be found
    after training, or measure nothing, in silence)."""
    have = sorted({s for c in corpora.values() for s in c["splits"]})
    named = [("scoring.split", s) for s in [scored_split] if s is not None]
    named += [("scoring.agreement_splits", s) for s in agreement_splits]
    named += [("explain.splits", s) for s in explain_splits]
    for key, split in named:
        if split not in have:
            raise InputError(None, f"config {key}: no corpus has a split {split!r} (the corpora's splits: "
                                   f"{', '.join(have)})")
    for name, corpus in corpora.items():
        for key in corpus.get("label_map", {}):
            if not isinstance(key, str):
                raise InputError(None, f"config corpora.{name}.label_map: key {key!r} is not a string; YAML reads "
                                       'bare no/yes/on/off as booleans, so quote the label ("no": noise)')
    for name in training_corpora:
        if name not in corpora:
            raise InputError(None, f"config training_corpora: {name!r} is not a corpus (have {sorted(corpora)})")
        for split in ("train", "dev"):
            if split not in corpora[name]["splits"]:
                raise InputError(None, f"config corpora.{name}.splits: a training corpus needs a {split!r} split")


def teacher(config: dict) -> dict:
    """The teacher: its ``kind``, whether it is a pre-trained black box, and the classes it knows
    (:mod:`proxyseg.teacher.blackbox`); a black box's proxies must read the spectrogram (it has no fused
    features), and pyannote needs a checkpoint."""
    from proxyseg.teacher.blackbox import KNOWN

    t = config["teacher"]
    kind = t["kind"]
    if kind == "wavlm":
        return {"kind": kind, "blackbox": False, "classes": list(S.CLASSES), "checkpoint": None}
    wavlm_input = sorted(n for n, p in config["proxies"].items() if p["input"] != "spectrogram")
    if wavlm_input:
        raise InputError(None, f"config proxies {wavlm_input}: teacher.kind {kind} is a black box without WavLM "
                               "features, so its proxies need input: spectrogram")
    if kind == "pyannote" and not t["checkpoint"]:
        raise InputError(None, "config teacher.checkpoint: kind pyannote needs a segmentation checkpoint (a local "
                               "pytorch_model.bin, a folder holding one, or a hub id)")
    return {"kind": kind, "blackbox": True, "classes": list(KNOWN[kind]), "checkpoint": t["checkpoint"]}
