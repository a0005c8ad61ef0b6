"""WavLM feature cache: hidden states of a frozen WavLM, float16, one HDF5 dataset per file.

Long files are cut into chunks with context on both sides; only each chunk's central frames are kept,
so memory is bounded by the chunk length while every kept frame saw at least ``overlap`` seconds of
context. Without waveform normalisation the convolutional states (index 0) are then identical to a
whole-file pass; transformer states differ only by the attention context beyond the chunk (measured in
tests/features/test_features.py).

A split can be cached in N shards (one job and file each, gathered by ``proxyseg.features.shards``): chunks of
equal length are batched across files by a plan that depends on the whole split only, so N changes
nothing in the values.

Waveform normalisation (the model's own preprocessing, METHOD §3): WavLM Large was pre-trained on
layer-normalised waveforms; its feature extractor config (``preprocessor_config.json``,
``microsoft/wavlm-large``) says ``do_normalize: true``, WavLM Base's says false. :func:`load_wavlm` reads
that flag (``features.normalize: auto``; ``true``/``false`` override it) and, when it is set, every
waveform fed to the model is first normalised to zero mean and unit variance, ``(x - mean) /
sqrt(var + 1e-7)`` (``Wav2Vec2FeatureExtractor.zero_mean_unit_var_norm``), **per chunk**: each chunk of
samples given to one forward pass (context included) is normalised with its own statistics. With
overlapping chunks the same sample can thus get different gains in two neighbouring chunks; every cached
frame comes from exactly one chunk (its kept frames), so each frame saw one consistently normalised
input, but the gain can change at the boundary between two kept blocks, and chunked features differ
from a whole-file pass also in the convolutional states (by how much the chunk statistics differ from
the file's: measured in tests/features/test_features.py). The segmenter runs the same chunk plan as the cache
(so it sees the same normalisation); the saliency stage normalises each explained segment on its own.
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

from proxyseg.core.atomic import atomic_path
from proxyseg.core.device import resolve_device
from proxyseg.core.errors import InputError
from proxyseg.core.frames import FRAME_RATE, HOP, SAMPLE_RATE, WIN, num_frames
from proxyseg.core.audio import load_audio
from proxyseg.core.provenance import provenance_json
from proxyseg.settings import Features, Runtime

log = logging.getLogger("proxyseg.features.wavlm")

UNTRAINED_MARKER = "UNTRAINED.md"
DEMO_MARKER = "DEMO_MODEL.md"

def is_untrained(model_path: str) -> bool:
    return (Path(model_path) / UNTRAINED_MARKER).is_file()


def is_demo_model(model_path: str) -> bool:
    """A model built by ``proxyseg demo-wavlm`` (random or briefly pre-trained): not for real use."""
    return is_untrained(model_path) or (Path(model_path) / DEMO_MARKER).is_file()


#: Added to the variance before the square root, as ``Wav2Vec2FeatureExtractor.zero_mean_unit_var_norm``.
NORM_EPS = 1e-7
PREPROCESSOR_CONFIG = "preprocessor_config.json"


def normalize_waveform(wav: torch.Tensor, eps: float = NORM_EPS) -> torch.Tensor:
    """Zero mean, unit variance along the last axis (each row of a batch on its own, population variance):
    ``(x - mean) / sqrt(var + eps)``, what ``Wav2Vec2FeatureExtractor`` does with ``do_normalize``.
    Differentiable; float32 statistics for lower-precision input."""
    x = wav.float() if wav.dtype in (torch.float16, torch.bfloat16) else wav
    var, mean = torch.var_mean(x, dim=-1, keepdim=True, correction=0)
    return ((x - mean) / torch.sqrt(var + eps)).to(wav.dtype)


def wavlm_do_normalize(model: str, revision: str | None = None) -> bool:
    """Whether the model's own preprocessing normalises the waveform (``do_normalize`` of its feature
    extractor config). A local folder without ``preprocessor_config.json`` means no normalisation
    (logged); for a hub id the config is loaded with ``Wav2Vec2FeatureExtractor.from_pretrained``."""
    from transformers import Wav2Vec2FeatureExtractor

    local = Path(model).is_dir()
    if local and not (Path(model) / PREPROCESSOR_CONFIG).is_file():
        log.info("%s has no %s: WavLM input is not normalised (raw waveforms)", model, PREPROCESSOR_CONFIG)
        return False
    try:
        extractor = Wav2Vec2FeatureExtractor.from_pretrained(model, revision=revision)
    except OSError as exc:
        raise InputError(model, f"cannot load the feature extractor config of {model} ({exc}): it says whether "
                                "the model expects normalised waveforms. Make it reachable, or set "
                                "features.normalize to true or false") from exc
    if int(getattr(extractor, "sampling_rate", SAMPLE_RATE)) != SAMPLE_RATE:
        log.warning("%s: its feature extractor expects %s Hz, proxyseg feeds %d Hz", model,
                    extractor.sampling_rate, SAMPLE_RATE)
    flag = bool(getattr(extractor, "do_normalize", False))
    log.info("%s: do_normalize %s (from its feature extractor config)", model, flag)
    return flag


def resolve_normalize(normalize, model: str, revision: str | None = None) -> bool:
    """``normalize`` (``"auto"``, True or False) -> whether WavLM input is normalised."""
    if isinstance(normalize, str) and normalize.lower() in ("true", "false"):
        normalize = normalize.lower() == "true"
    if normalize == "auto":
        return wavlm_do_normalize(model, revision)
    if not isinstance(normalize, (bool, np.bool_)):
        raise InputError(None, f"features.normalize must be auto, true or false, got {normalize!r}")
    return bool(normalize)


def _normalize_input(module, args, kwargs):
    """Forward pre-hook of a loaded WavLM: normalises ``input_values`` when ``module.do_normalize``."""
    if not getattr(module, "do_normalize", False):
        return None
    if args:
        return (normalize_waveform(args[0]), *args[1:]), kwargs
    if kwargs.get("input_values") is not None:
        return args, {**kwargs, "input_values": normalize_waveform(kwargs["input_values"])}
    return None


def load_wavlm(model: str, revision: str | None = None, normalize="auto"):
    """A frozen WavLM from a hub id (``microsoft/wavlm-large``) or a local folder written by ``save_pretrained``.

    The model applies its own waveform preprocessing: ``net.do_normalize`` (``normalize``: ``"auto"``
    reads :func:`wavlm_do_normalize`, True or False overrides it) and, when set, a forward pre-hook
    normalises every input waveform, row by row (:func:`normalize_waveform`), before the model sees it,
    so each chunk given to a forward pass is normalised on its own, wherever the model is run.
    """
    from transformers import WavLMModel

    try:
        net = WavLMModel.from_pretrained(model, revision=revision)
    except OSError as exc:
        raise InputError(model, f"cannot load WavLM ({exc}). Give a hub id reachable from this machine "
                                "or a local folder saved with save_pretrained (features.model in config)") from exc
    net.eval()
    for p in net.parameters():
        p.requires_grad_(False)
    net.do_normalize = resolve_normalize(normalize, model, revision)
    net.register_forward_pre_hook(_normalize_input, with_kwargs=True)
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


@dataclass(frozen=True)
class Chunk:
    """One forward-pass input: chunk ``plan`` of file number ``file`` (in the split's sorted order)."""

    file: int
    plan: ChunkPlan

    @property
    def length(self) -> int:
        start, end = self.plan.samples
        return end - start


def plan_batches(frames_per_file, chunk_frames: int, overlap_frames: int, batch_size: int) -> list[list[Chunk]]:
    """Batches of equal-length chunks across files, a function of the whole split's file lengths only.

    Chunks are grouped by sample length (no padding, so no result depends on padding), each group
    taken in file order and cut into batches of ``batch_size``; batches are ordered by the first file
    they touch so that a job walks its files once. Because the plan does not depend on how the split is
    sharded, every chunk is computed with the same batch companions in the same batch position whatever
    the number of shards: the cached features are bit-identical for any N (CPU matrix kernels give
    slightly different results for different batch shapes, so this matters).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    groups: dict[int, list[Chunk]] = {}
    for index, n in enumerate(frames_per_file):
        if n <= 0:
            continue
        for plan in plan_chunks(int(n), max(1, chunk_frames), overlap_frames):
            chunk = Chunk(index, plan)
            groups.setdefault(chunk.length, []).append(chunk)
    batches = [group[i:i + batch_size] for group in groups.values() for i in range(0, len(group), batch_size)]
    batches.sort(key=lambda b: (b[0].file, b[0].plan.keep_start, -len(b)))
    return batches


def _is_oom(err: BaseException) -> bool:
    return isinstance(err, torch.OutOfMemoryError) or "out of memory" in str(err).lower()


def hidden_states(net, wav: torch.Tensor, layers: list[int], use_amp: bool) -> np.ndarray:
    """(B, t, L, D) float16 hidden states of a batch of equal-length waveforms."""
    with torch.autocast(device_type=wav.device.type, dtype=torch.float16, enabled=use_amp):
        hidden = net(wav, output_hidden_states=True).hidden_states
    stacked = torch.stack([hidden[j] for j in layers], dim=2)
    return stacked.float().cpu().numpy().astype(np.float16)


class BatchRunner:
    """Runs planned batches through the model; on a GPU out-of-memory error, halves the batch and goes on.

    ``splits`` counts the halvings (those chunks then had other batch companions: recorded in the
    output's attributes, since their values may differ in the last float16 bit). A model from
    :func:`load_wavlm` with ``do_normalize`` normalises each chunk of a batch on its own (its rows), so
    batching and halving do not change the normalisation.
    """

    def __init__(self, net, layers: list[int], device: torch.device, half: bool):
        self.net, self.layers, self.device = net, layers, device
        self.use_amp = bool(half) and device.type == "cuda"
        self.splits = 0
        self.frames = 0

    def run(self, samples_of, batch: list[Chunk]) -> list[np.ndarray]:
        """Hidden states of every chunk's kept frames; ``samples_of(file)`` gives a file's samples."""
        wav = np.stack([samples_of(c.file)[slice(*c.plan.samples)] for c in batch])
        try:
            states = hidden_states(self.net, torch.from_numpy(wav).to(self.device), self.layers, self.use_amp)
        except (torch.OutOfMemoryError, RuntimeError) as err:
            if not _is_oom(err) or len(batch) == 1:
                raise
            if self.device.type == "cuda":
                torch.cuda.empty_cache()
            self.splits += 1
            half = len(batch) // 2
            log.warning("out of memory on a batch of %d chunks: splitting it in two (%s)", len(batch), err)
            return self.run(samples_of, batch[:half]) + self.run(samples_of, batch[half:])
        out = []
        for b, chunk in enumerate(batch):
            p = chunk.plan
            if states.shape[1] != p.ctx_end - p.ctx_start:
                raise RuntimeError(f"model returned {states.shape[1]} frames for a chunk of {p.ctx_end - p.ctx_start}; "
                                   "is it a WavLM with hop 320 and receptive field 400?")
            lo = p.keep_start - p.ctx_start
            out.append(states[b, lo:lo + p.keep_end - p.keep_start])
            self.frames += p.keep_end - p.keep_start
        return out


@torch.inference_mode()
def extract_states(net, samples: np.ndarray, layers: list[int], chunk_seconds: float, overlap_seconds: float,
                   device: torch.device, batch_size: int = 4, half: bool = False) -> np.ndarray:
    """(T, L, D) float16 hidden states of one file, computed chunk by chunk."""
    n_frames = num_frames(len(samples))
    out = np.zeros((n_frames, len(layers), net.config.hidden_size), dtype=np.float16)
    runner = BatchRunner(net, layers, device, half)
    for batch in plan_batches([n_frames], round(chunk_seconds * FRAME_RATE), round(overlap_seconds * FRAME_RATE),
                              batch_size):
        for chunk, states in zip(batch, runner.run(lambda _: samples, batch)):
            out[chunk.plan.keep_start:chunk.plan.keep_end] = states
    return out


class _AudioCache:
    """Decoded audio of the files that still have chunks to compute; a file is dropped after its last one."""

    def __init__(self, table: pd.DataFrame, batches: list[list[Chunk]], manifest):
        self.table, self.manifest = table, manifest
        self.pending: dict[int, int] = {}
        for batch in batches:
            for chunk in batch:
                self.pending[chunk.file] = self.pending.get(chunk.file, 0) + 1
        self.audio: dict[int, np.ndarray] = {}

    def get(self, index: int) -> np.ndarray:
        if index not in self.audio:
            row = self.table.iloc[index]
            samples = load_audio(row["audio"])
            if num_frames(len(samples)) != int(row["num_frames"]):
                raise InputError(row["audio"], f"audio gives {num_frames(len(samples))} frames but the manifest "
                                               f"{self.manifest} says {int(row['num_frames'])}; the file changed "
                                               "after harmonisation: rerun it")
            self.audio[index] = samples
        return self.audio[index]

    def done(self, index: int) -> None:
        self.pending[index] -= 1
        if not self.pending[index]:
            self.audio.pop(index, None)


def read_manifest(manifest) -> pd.DataFrame:
    try:
        table = pd.read_csv(manifest, sep="\t")
    except (OSError, pd.errors.ParserError) as err:
        raise InputError(manifest, f"cannot read manifest ({err})") from err
    missing = {"uri", "audio", "duration", "num_frames"} - set(table.columns)
    if missing:
        raise InputError(manifest, f"manifest lacks column(s) {sorted(missing)}; rerun harmonise")
    return table


def extract_features(manifest: str | os.PathLike, out_h5: str | os.PathLike, model: str,
                     layers=Features.layers, revision: str | None = Features.revision,
                     chunk_seconds: float = Features.chunk_seconds, overlap_seconds: float = Features.overlap_seconds,
                     batch_size: int = Runtime.feature_batch_size, device: str = Runtime.device,
                     half: bool | str = Features.half, shard: tuple[int, int] = (0, 1),
                     normalize=Features.normalize) -> dict:
    """Cache WavLM states of the files of shard ``shard = (index, count)`` of a manifest into ``out_h5``.

    The split's files are sorted by URI and cut into ``count`` contiguous shards of about equal audio
    time (``shards.assign_shards``); the batches are planned over the whole split (``plan_batches``) and
    this job runs every batch that touches one of its files, so features do not depend on ``count``.
    ``half``: float16 autocast, only on a GPU (``"auto"``: on whenever the device is a GPU).
    ``normalize``: waveform normalisation per chunk (``"auto"``: as the model's feature extractor config
    says, :func:`load_wavlm`); the outcome is the attribute ``do_normalize``. Written atomically; returns ``{"files", "seconds", "batches", "oom_splits"}``.
    """
    from proxyseg.features.shards import assign_shards, sort_manifest

    index, count = shard
    table = sort_manifest(read_manifest(manifest))
    owner = assign_shards(table["uri"].tolist(), table["duration"].tolist(), count)
    mine = set(np.flatnonzero(owner == index).tolist())
    dev = resolve_device(device)
    use_half = (dev.type == "cuda") if half == "auto" else bool(half)
    net = load_wavlm(model, revision, normalize).to(dev)
    num_states = net.config.num_hidden_layers + 1
    chosen = resolve_layers(layers, num_states)
    untrained = is_untrained(model)
    demo_model = is_demo_model(model)
    if untrained:
        log.warning("model %s is UNTRAINED (random weights): features are for the offline demo only", model)
    elif demo_model:
        log.warning("model %s is the DEMO WavLM (tiny, pre-trained on the demo's training audio; not "
                    "microsoft/wavlm-large): features are for the offline demo only", model)
    chunk_frames, overlap_frames = max(1, round(chunk_seconds * FRAME_RATE)), round(overlap_seconds * FRAME_RATE)
    plan = plan_batches(table["num_frames"].astype(int).tolist(), chunk_frames, overlap_frames, batch_size)
    batches = [b for b in plan if any(c.file in mine for c in b)]
    cache = _AudioCache(table, batches, manifest)
    runner = BatchRunner(net, chosen, dev, use_half)
    settings = dict(model=str(model), revision=revision or "", untrained=untrained, demo_model=demo_model, layers=chosen,
                    chunk_seconds=chunk_seconds, overlap_seconds=overlap_seconds, device=str(dev), half=use_half,
                    batch_size=batch_size, shard=f"{index + 1}-of-{count}", normalize=normalize,
                    do_normalize=net.do_normalize)
    seconds = float(table["duration"].iloc[sorted(mine)].sum()) if mine else 0.0
    dim = net.config.hidden_size
    with atomic_path(out_h5) as tmp, h5py.File(tmp, "w") as h5:
        h5.attrs.update(model=str(model), revision=revision or "", untrained=untrained, demo_model=demo_model,
                        layers=np.array(chosen, dtype=np.int64), hidden_size=dim, frame_rate=FRAME_RATE,
                        chunk_seconds=chunk_seconds, overlap_seconds=overlap_seconds, batch_size=batch_size,
                        half=use_half, shard_index=index, shard_count=count, do_normalize=net.do_normalize,
                        provenance=provenance_json(**settings))
        datasets = {}
        for i in sorted(mine):
            n = int(table["num_frames"].iloc[i])
            datasets[i] = h5.create_dataset(table["uri"].iloc[i], shape=(n, len(chosen), dim), dtype=np.float16,
                                            chunks=(min(n, 250) or 1, len(chosen), dim) if n else None)
        with tqdm(total=seconds, unit="s audio", desc=f"WavLM {Path(out_h5).stem}", unit_scale=True) as bar:
            with torch.inference_mode():
                for batch in batches:
                    for chunk, states in zip(batch, runner.run(cache.get, batch)):
                        if chunk.file in mine:
                            datasets[chunk.file][chunk.plan.keep_start:chunk.plan.keep_end] = states
                            bar.update((chunk.plan.keep_end - chunk.plan.keep_start) / FRAME_RATE)
                        cache.done(chunk.file)
        for i in sorted(mine):  # files too short for one frame never went through a batch: check them too
            if int(table["num_frames"].iloc[i]) == 0:
                cache.get(i)
        h5.attrs["oom_splits"] = runner.splits
    log.info("shard %d of %d: cached %d files (%.1f s of audio) into %s in %d batches (waveforms %s)", index + 1,
             count, len(mine), seconds, out_h5, len(batches),
             "normalised per chunk" if net.do_normalize else "not normalised")
    return {"files": len(mine), "seconds": seconds, "batches": len(batches), "oom_splits": runner.splits}
