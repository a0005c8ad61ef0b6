"""WavLM feature cache: hidden states of a frozen WavLM, float16, one HDF5 dataset per file.

Long files are cut into chunks with context on both sides; only each chunk's central frames are kept,
so memory is bounded by the chunk length while every kept frame saw at least ``overlap`` seconds of
context. The convolutional states (index 0) are then identical to a whole-file pass; transformer states
differ only by the attention context beyond the chunk (measured in tests/test_features.py).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from .atomic import atomic_dir, atomic_path
from .errors import InputError
from .frames import FRAME_RATE, HOP, SAMPLE_RATE, WIN, num_frames
from .io.audio import load_audio
from .provenance import provenance_json, seed_everything

log = logging.getLogger("proxyseg.features")

UNTRAINED_MARKER = "UNTRAINED.md"
DEMO_MARKER = "DEMO_MODEL.md"

#: Geometry of the demo's small WavLM: WavLM Base's layout (group norm in the first CNN layer, post layer
#: norm) at a size that runs many times faster than real time on two CPU cores. WavLM Large's layout
#: (``feat_extract_norm="layer"``, which normalises away the level of every 0.6 ms CNN frame) gave worse
#: linear probes with random or briefly pre-trained weights on the demo (README, "Results on the demo").
DEMO_WAVLM = dict(hidden_size=256, num_hidden_layers=4, num_attention_heads=4, intermediate_size=1024,
                  conv_dim=(128,) * 7, feat_extract_norm="group", do_stable_layer_norm=False,
                  num_conv_pos_embeddings=128, num_conv_pos_embedding_groups=16)


def pick_device(device: str = "auto") -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def build_untrained_wavlm(out_dir: str | os.PathLike, seed: int, **overrides) -> Path:
    """Save a randomly initialised WavLM (seeded) where ``from_pretrained`` can load it, marked UNTRAINED."""
    return build_demo_wavlm(out_dir, seed, pretrain={"steps": 0}, overrides=overrides)


def build_demo_wavlm(out_dir: str | os.PathLike, seed: int, audio: list[np.ndarray] | None = None,
                     pretrain: dict | None = None, overrides: dict | None = None,
                     device: str = "auto") -> Path:
    """The demo's small WavLM, saved with ``save_pretrained`` (so ``load_wavlm`` reads it like a hub model).

    With ``pretrain["steps"] > 0`` it is first pre-trained without labels on ``audio`` (masked log-mel
    prediction, :mod:`proxyseg.wavlm_pretrain`) and marked ``DEMO_MODEL.md``, with its loss curve
    (``pretrain_curve.tsv``/``.png``) beside it; otherwise its weights stay random and it is marked
    ``UNTRAINED.md``. Either way it is a demo stand-in, not microsoft/wavlm-large.
    """
    from transformers import WavLMConfig, WavLMModel

    from .wavlm_pretrain import pretrain_settings, pretrain_wavlm, write_curve

    settings = pretrain_settings(pretrain if pretrain is not None else {"steps": 0})
    seed_everything(seed)
    config = WavLMConfig(**{**DEMO_WAVLM, **(overrides or {})})
    model = WavLMModel(config)
    out_dir = Path(out_dir)
    with atomic_dir(out_dir) as tmp:
        curve = []
        if settings["steps"]:
            if not audio:
                raise InputError(None, "demo WavLM pre-training needs training audio (features.demo_pretrain.steps > 0)")
            dev = pick_device(device)
            total = sum(len(a) for a in audio) / SAMPLE_RATE
            log.info("pre-training the demo WavLM for %d steps on %d files (%.0f s of audio), device %s",
                     settings["steps"], len(audio), total, dev)
            curve = pretrain_wavlm(model, audio, settings, seed=seed, device=dev)
            model.to("cpu")
            write_curve(curve, tmp / "pretrain_curve.tsv", tmp / "pretrain_curve.png")
        model.eval()
        model.save_pretrained(tmp)
        record = provenance_json(seed=seed, config=config.to_dict(), pretrain=settings,
                                 pretrain_audio_seconds=sum(len(a) for a in audio or []) / SAMPLE_RATE,
                                 pretrain_final_loss=_final_loss(curve))
        if curve:
            (tmp / DEMO_MARKER).write_text(
                f"# DEMO WavLM: a tiny WavLM pre-trained for {len(curve)} steps ({curve[-1]['seconds']:.0f} s) "
                "on the demo's training audio; not microsoft/wavlm-large\n\n"
                f"{config.num_hidden_layers} transformer layers of {config.hidden_size} dims, seed {seed}. "
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


def is_untrained(model_path: str) -> bool:
    return (Path(model_path) / UNTRAINED_MARKER).is_file()


def is_demo_model(model_path: str) -> bool:
    """A model built by ``proxyseg demo-wavlm`` (random or briefly pre-trained): not for real use."""
    return is_untrained(model_path) or (Path(model_path) / DEMO_MARKER).is_file()


def load_wavlm(model: str, revision: str | None = None):
    """A frozen WavLM from a hub id (``microsoft/wavlm-large``) or a local folder written by ``save_pretrained``."""
    from transformers import WavLMModel

    try:
        net = WavLMModel.from_pretrained(model, revision=revision)
    except OSError as exc:
        raise InputError(model, f"cannot load WavLM ({exc}). Give a hub id reachable from this machine "
                                "or a local folder saved with save_pretrained (features.model in config)") from exc
    net.eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return net


@dataclass
class ChunkPlan:
    """Frames ``[keep_start, keep_end)`` of the file come from the chunk whose samples start at frame ``ctx_start``."""

    ctx_start: int
    ctx_end: int
    keep_start: int
    keep_end: int

    @property
    def samples(self) -> tuple[int, int]:
        return self.ctx_start * HOP, (self.ctx_end - 1) * HOP + WIN


def plan_chunks(n_frames: int, chunk_frames: int, overlap_frames: int) -> list[ChunkPlan]:
    """Cut ``n_frames`` into kept blocks of ``chunk_frames`` with ``overlap_frames`` of context each side."""
    plans = []
    for keep_start in range(0, n_frames, chunk_frames):
        keep_end = min(n_frames, keep_start + chunk_frames)
        plans.append(ChunkPlan(max(0, keep_start - overlap_frames), min(n_frames, keep_end + overlap_frames),
                               keep_start, keep_end))
    return plans


def resolve_layers(layers, num_states: int) -> list[int]:
    if layers in (None, "all"):
        return list(range(num_states))
    out = [int(i) for i in layers]
    bad = [i for i in out if not 0 <= i < num_states]
    if bad:
        raise InputError(None, f"features.layers {bad} out of range: this model has hidden states 0..{num_states - 1}")
    return out


@torch.inference_mode()
def extract_states(net, samples: np.ndarray, layers: list[int], chunk_seconds: float, overlap_seconds: float,
                   device: torch.device, batch_size: int = 4, half: bool = False) -> np.ndarray:
    """(T, L, D) float16 hidden states of one file, computed chunk by chunk."""
    n_frames = num_frames(len(samples))
    dim = net.config.hidden_size
    out = np.zeros((n_frames, len(layers), dim), dtype=np.float16)
    if n_frames == 0:
        return out
    plans = plan_chunks(n_frames, max(1, round(chunk_seconds * FRAME_RATE)), round(overlap_seconds * FRAME_RATE))
    # chunks of equal length are batched together (all interior chunks of a long file)
    by_length: dict[int, list[ChunkPlan]] = {}
    for plan in plans:
        start, end = plan.samples
        by_length.setdefault(end - start, []).append(plan)
    use_amp = half and device.type == "cuda"
    for group in by_length.values():
        for i in range(0, len(group), batch_size):
            batch = group[i:i + batch_size]
            wav = torch.from_numpy(np.stack([samples[slice(*p.samples)] for p in batch])).to(device)
            with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=use_amp):
                hidden = net(wav, output_hidden_states=True).hidden_states
            stacked = torch.stack([hidden[j] for j in layers], dim=2)  # (B, t, L, D)
            for b, plan in enumerate(batch):
                got = stacked.shape[1]
                if got != plan.ctx_end - plan.ctx_start:
                    raise RuntimeError(f"model returned {got} frames for a chunk of {plan.ctx_end - plan.ctx_start}; "
                                       "is it a WavLM with hop 320 and receptive field 400?")
                lo = plan.keep_start - plan.ctx_start
                out[plan.keep_start:plan.keep_end] = (
                    stacked[b, lo:lo + plan.keep_end - plan.keep_start].float().cpu().numpy().astype(np.float16))
    return out


def extract_features(manifest: str | os.PathLike, out_h5: str | os.PathLike, model: str, layers="all",
                     revision: str | None = None, chunk_seconds: float = 30.0, overlap_seconds: float = 2.5,
                     batch_size: int = 4, device: str = "auto", half: bool = False) -> None:
    """Cache WavLM states for every file of a harmonised manifest into ``out_h5`` (written atomically)."""
    table = pd.read_csv(manifest, sep="\t")
    dev = pick_device(device)
    net = load_wavlm(model, revision).to(dev)
    num_states = net.config.num_hidden_layers + 1
    chosen = resolve_layers(layers, num_states)
    untrained = is_untrained(model)
    demo_model = is_demo_model(model)
    if untrained:
        log.warning("model %s is UNTRAINED (random weights): features are for the offline demo only", model)
    elif demo_model:
        log.warning("model %s is the DEMO WavLM (tiny, pre-trained on the demo's training audio; not "
                    "microsoft/wavlm-large): features are for the offline demo only", model)
    settings = dict(model=str(model), revision=revision or "", untrained=untrained, demo_model=demo_model, layers=chosen,
                    chunk_seconds=chunk_seconds, overlap_seconds=overlap_seconds, device=str(dev), half=half)
    total = float(table["duration"].sum())
    with atomic_path(out_h5) as tmp, h5py.File(tmp, "w") as h5:
        h5.attrs.update(model=str(model), revision=revision or "", untrained=untrained, demo_model=demo_model,
                        layers=np.array(chosen, dtype=np.int64), hidden_size=net.config.hidden_size,
                        frame_rate=FRAME_RATE, chunk_seconds=chunk_seconds, overlap_seconds=overlap_seconds,
                        provenance=provenance_json(**settings))
        with tqdm(total=total, unit="s audio", desc=f"WavLM {Path(out_h5).stem}", unit_scale=True) as bar:
            for row in table.itertuples():
                samples = load_audio(row.audio)
                expected = int(row.num_frames)
                states = extract_states(net, samples, chosen, chunk_seconds, overlap_seconds, dev, batch_size, half)
                if len(states) != expected:
                    raise InputError(row.audio, f"audio gives {len(states)} frames but the manifest {manifest} "
                                                f"says {expected}; the file changed after harmonisation: rerun it")
                h5.create_dataset(row.uri, data=states, chunks=(min(len(states), 250) or 1, *states.shape[1:]))
                bar.update(row.duration)
    log.info("cached %d files (%.1f s of audio) into %s", len(table), total, out_h5)

