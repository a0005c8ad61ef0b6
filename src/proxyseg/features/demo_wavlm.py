"""The demo's small WavLM (``proxyseg demo-wavlm``): built with random weights or briefly pre-trained
(:mod:`proxyseg.features.pretrain`) and saved like a hub model. Apart from :mod:`proxyseg.features.wavlm`
(loading and extraction), so loading a model never imports its pre-training and the two do not import each
other.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pandas as pd

from proxyseg.core.atomic import atomic_dir
from proxyseg.core.audio import load_audio
from proxyseg.core.device import resolve_device
from proxyseg.core.errors import InputError
from proxyseg.core.frames import SAMPLE_RATE
from proxyseg.core.provenance import provenance_json, seed_everything
from proxyseg.features.wavlm import DEMO_MARKER, UNTRAINED_MARKER

log = logging.getLogger("proxyseg.features.wavlm")  # the name its messages have always had

__all__ = ["DEMO_WAVLM", "build_demo_wavlm", "build_untrained_wavlm", "demo_do_normalize", "manifest_audio"]

#: Geometry of the demo's small WavLM: WavLM Base's layout (group norm in the first CNN layer, post layer
#: norm) at a size that runs many times faster than real time on two CPU cores. WavLM Large's layout
#: (``feat_extract_norm="layer"``, which normalises away the level of every 0.6 ms CNN frame) gave worse
#: linear probes with random or briefly pre-trained weights on the demo (docs/EXPERIMENTS.md, "Linear probes").
DEMO_WAVLM = dict(hidden_size=256, num_hidden_layers=4, num_attention_heads=4, intermediate_size=1024,
                  conv_dim=(128,) * 7, feat_extract_norm="group", do_stable_layer_norm=False,
                  num_conv_pos_embeddings=128, num_conv_pos_embedding_groups=16)


def build_untrained_wavlm(out_dir: str | os.PathLike, seed: int, do_normalize: bool | None = None,
                          **overrides) -> Path:
    """Save a randomly initialised WavLM (seeded) where ``from_pretrained`` can load it, marked UNTRAINED."""
    return build_demo_wavlm(out_dir, seed, pretrain={"steps": 0}, overrides=overrides, do_normalize=do_normalize)


def demo_do_normalize(config) -> bool:
    """The demo WavLM's ``do_normalize``: that of the checkpoints whose layout it copies. WavLM Base
    (``feat_extract_norm="group"``, the demo's default) was pre-trained on raw waveforms (its feature
    extractor config says ``do_normalize: false``), WavLM Large (``"layer"``) on normalised ones (true)."""
    return config.feat_extract_norm == "layer"


def build_demo_wavlm(out_dir: str | os.PathLike, seed: int, audio: list[np.ndarray] | None = None,
                     pretrain: dict | None = None, overrides: dict | None = None,
                     device: str = "auto", do_normalize: bool | None = None) -> Path:
    """The demo's small WavLM, saved with ``save_pretrained`` (so ``load_wavlm`` reads it like a hub model).

    With ``pretrain["steps"] > 0`` it is first pre-trained without labels on ``audio`` (masked log-mel
    prediction, :mod:`proxyseg.features.pretrain`) and marked ``DEMO_MODEL.md``, with its loss curve
    (``pretrain_curve.tsv``/``.png``) beside it; otherwise its weights stay random and it is marked
    ``UNTRAINED.md``. Either way it is a demo stand-in, not microsoft/wavlm-large.

    Like a hub model it gets a ``preprocessor_config.json`` (a ``Wav2Vec2FeatureExtractor``) whose
    ``do_normalize`` (default :func:`demo_do_normalize`: true for WavLM Large's layout only) says whether
    its input waveforms are normalised; pre-training normalises its crops the same way, so the model
    sees at extraction (:func:`load_wavlm`, ``features.normalize: auto``) what it saw in pre-training.
    """
    from transformers import Wav2Vec2FeatureExtractor, WavLMConfig, WavLMModel

    from proxyseg.features.pretrain import pretrain_settings, pretrain_wavlm, write_curve

    settings = pretrain_settings(pretrain if pretrain is not None else {"steps": 0})
    seed_everything(seed)
    config = WavLMConfig(**{**DEMO_WAVLM, **(overrides or {})})
    model = WavLMModel(config)
    do_normalize = demo_do_normalize(config) if do_normalize is None else bool(do_normalize)
    out_dir = Path(out_dir)
    with atomic_dir(out_dir) as tmp:
        curve = []
        if settings["steps"]:
            if not audio:
                raise InputError(None, "demo WavLM pre-training needs training audio (features.demo_pretrain.steps > 0)")
            dev = resolve_device(device)
            total = sum(len(a) for a in audio) / SAMPLE_RATE
            log.info("pre-training the demo WavLM for %d steps on %d files (%.0f s of audio), device %s",
                     settings["steps"], len(audio), total, dev)
            curve = pretrain_wavlm(model, audio, settings, seed=seed, device=dev, normalize=do_normalize)
            model.to("cpu")
            write_curve(curve, tmp / "pretrain_curve.tsv", tmp / "pretrain_curve.png")
        model.eval()
        model.save_pretrained(tmp)
        Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=SAMPLE_RATE, padding_value=0.0,
                                 do_normalize=do_normalize, return_attention_mask=True).save_pretrained(tmp)
        record = provenance_json(seed=seed, config=config.to_dict(), pretrain=settings, do_normalize=do_normalize,
                                 pretrain_audio_seconds=sum(len(a) for a in audio or []) / SAMPLE_RATE,
                                 pretrain_final_loss=_final_loss(curve))
        if curve:
            (tmp / DEMO_MARKER).write_text(
                f"# DEMO WavLM: a tiny WavLM pre-trained for {len(curve)} steps ({curve[-1]['seconds']:.0f} s) "
                "on the demo's training audio; not microsoft/wavlm-large\n\n"
                f"{config.num_hidden_layers} transformer layers of {config.hidden_size} dims, seed {seed}; input "
                f"waveforms {'normalised per crop/chunk' if do_normalize else 'not normalised'} (do_normalize). "
                "Self-supervised, without labels: spans of its CNN features were masked and a linear head\n"
                "(thrown away) predicted the standardised log-mel frames there (HuBERT/WavLM-style masked\n"
                f"prediction; unmasked frames weighted {settings['unmasked_weight']:g}); final masked loss "
                f"{_final_loss(curve):.3f}, where 1.0 is predicting the mean (`pretrain_curve.tsv`).\n"
                "Its features are for the offline demo only; set `features.model: microsoft/wavlm-large` for real use.\n\n"
                f"```json\n{record}\n```\n")
        else:
            (tmp / UNTRAINED_MARKER).write_text(
                "# UNTRAINED WavLM (random weights)\n\n"
                f"Randomly initialised with seed {seed} for the offline demo. Its features carry no pretrained\n"
                "knowledge; set `features.model: microsoft/wavlm-large` in config for real use.\n\n"
                f"```json\n{record}\n```\n")
    return out_dir


def manifest_audio(manifests: list[str | os.PathLike]) -> list[np.ndarray]:
    """16 kHz mono samples of every file listed in harmonised ``manifest.tsv`` files."""
    out = []
    for manifest in manifests:
        table = pd.read_csv(manifest, sep="\t")
        if "audio" not in table.columns:
            raise InputError(manifest, "not a harmonised manifest (no 'audio' column); rerun harmonise")
        out += [load_audio(path) for path in table["audio"]]
    return out


def _final_loss(curve: list[dict]) -> float | None:
    if not curve:
        return None
    tail = [r["masked_loss"] for r in curve[-25:]]
    return sum(tail) / len(tail)
