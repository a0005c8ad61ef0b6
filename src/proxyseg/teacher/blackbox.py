"""Pre-trained black-box teachers (``teacher.kind``): segmenters people use, explained through the proxy.

The paper explains a pre-trained black box; besides the workflow's own WavLM + TCN teacher
(``kind: wavlm``), two real segmenters can be distilled:

* ``silero``: Silero VAD (``pip install proxyseg[silero]``, weights inside the wheel). It knows *speech*.
  It scores chunks of 512 samples (32 ms) at 16 kHz, chunk ``i`` covering samples ``[512 i, 512 i + 512)``.
* ``pyannote``: any pyannote.audio segmentation checkpoint (``pip install proxyseg[pyannote]``; a local
  ``pytorch_model.bin``, a folder holding one, or a hub id), multilabel or powerset. It gives per-frame
  activities of up to N speakers on 5 s (or 10 s) windows; like pyannote's own voice activity and
  overlapped speech detection, *speech* is the highest speaker activity of a window frame and *overlap*
  the second highest, computed per window before pyannote's ``Inference`` aggregates the overlapping
  windows (Hamming-weighted mean of probabilities). Its frames are about 17 ms.

Frame grid: each black box's probabilities are mapped onto WavLM's 20 ms grid
(:mod:`proxyseg.core.frames`) by linear interpolation at the centre of each 20 ms frame from the centres
of the black box's own frames (constant beyond the first and last). Logits are ``log p - log(1 - p)``
with ``p`` clipped to ``[1e-6, 1 - 1e-6]`` (the black boxes publish probabilities; ``|logit| <= 13.8``).
Classes a black box does not know are NaN in its logits and absent from the dump's ``known_classes``,
as for a corpus that does not annotate them: distillation, scoring and fidelity leave them out.
"""

from __future__ import annotations

import logging
import os

import numpy as np

from proxyseg.core.errors import InputError
from proxyseg.core.frames import CLASSES, SAMPLE_RATE, frame_centers, num_frames
from proxyseg.core.safeload import check_blackbox_checkpoint

logger = logging.getLogger("proxyseg.teacher.blackbox")

#: ``teacher.kind`` values whose teacher is a pre-trained black box (not trained by the workflow)
BLACKBOXES = ("pyannote", "silero")
#: the classes each black box knows, in :data:`CLASSES` order
KNOWN = {"silero": ("speech",), "pyannote": ("speech", "overlap")}
EPS = 1e-6  # probabilities are clipped to [EPS, 1 - EPS] before taking logits
SILERO_CHUNK = 512  # samples per Silero VAD decision at 16 kHz


def _extra(kind: str, module: str):
    """Import the optional extra of a black box, or say which extra to install."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise InputError(None, f"teacher.kind: {kind} needs the optional extra: pip install 'proxyseg[{kind}]' "
                               f"(or install the locked environment, requirements.lock) ({err})") from err


def to_grid(times: np.ndarray, probs: np.ndarray, n: int) -> np.ndarray:
    """``probs`` (M, K) at frame-centre ``times`` (M,) -> (n, K) at the centres of the 20 ms frames."""
    probs = np.asarray(probs, dtype=np.float64).reshape(len(times), -1)
    centres = frame_centers(n)
    if len(times) == 0:
        return np.full((n, probs.shape[1]), np.nan)
    return np.stack([np.interp(centres, times, probs[:, k]) for k in range(probs.shape[1])], axis=1)


def logits_of(probs: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(probs, dtype=np.float64), EPS, 1 - EPS)
    return np.log(p) - np.log1p(-p)


class BlackBox:
    """A pre-trained segmenter on 16 kHz mono audio: :meth:`logits` gives ``(T, 4)`` on the 20 ms grid."""

    kind = ""
    classes: tuple[str, ...] = ()

    def probabilities(self, samples: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(times (M,), probs (M, len(classes)))`` on the model's own frames."""
        raise NotImplementedError

    def logits(self, samples: np.ndarray) -> np.ndarray:
        """``(num_frames(len(samples)), 4)`` float32 logits; NaN for the classes the model does not know."""
        n = num_frames(len(samples))
        out = np.full((n, len(CLASSES)), np.nan, dtype=np.float32)
        if n == 0:
            return out
        times, probs = self.probabilities(np.asarray(samples, dtype=np.float32))
        grid = to_grid(times, probs, n)
        for k, name in enumerate(self.classes):
            out[:, CLASSES.index(name)] = logits_of(grid[:, k])
        return out

    def describe(self) -> dict:
        return {"kind": self.kind, "classes": list(self.classes)}


class Silero(BlackBox):
    """Silero VAD from its wheel (``silero_vad.load_silero_vad``); its state runs over the whole file."""

    kind = "silero"
    classes = KNOWN["silero"]

    def __init__(self, checkpoint: str | None = None, device: str = "cpu", onnx: bool = False):
        silero_vad = _extra("silero", "silero_vad")
        if checkpoint:
            raise InputError(None, "teacher.checkpoint: Silero VAD loads the model its wheel ships; leave "
                                   "checkpoint empty (null) for kind silero")
        self.model = silero_vad.load_silero_vad(onnx=onnx)
        self.version = getattr(silero_vad, "__version__", None) or _version("silero-vad")

    def probabilities(self, samples):
        import torch

        with torch.no_grad():
            self.model.reset_states()
            probs = self.model.audio_forward(torch.from_numpy(samples), SAMPLE_RATE)
        probs = probs.reshape(-1).float().numpy()
        times = (np.arange(len(probs)) * SILERO_CHUNK + SILERO_CHUNK / 2) / SAMPLE_RATE
        return times, probs[:, None]

    def describe(self):
        return {**super().describe(), "model": "silero_vad.load_silero_vad()", "version": self.version,
                "frames": f"{SILERO_CHUNK} samples at 16 kHz, interpolated to the 20 ms grid"}


class Pyannote(BlackBox):
    """A pyannote.audio segmentation model: speech = highest speaker activity, overlap = second highest."""

    kind = "pyannote"
    classes = KNOWN["pyannote"]

    def __init__(self, checkpoint: str | os.PathLike, device: str = "cpu", step: float = 0.1,
                 batch_size: int = 32):
        if not checkpoint:
            raise InputError(None, "teacher.checkpoint: kind pyannote needs a segmentation checkpoint (a local "
                                   "pytorch_model.bin, a folder holding one, or a hub id such as "
                                   "pyannote/segmentation-3.0)")
        _extra("pyannote", "pyannote.audio")
        import torch
        import warnings
        from pyannote.audio import Inference, Model

        self.checkpoint = str(checkpoint)
        if os.path.isfile(self.checkpoint):  # pyannote unpickles it in full: refuse globals that could run code
            check_blackbox_checkpoint(self.checkpoint)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                model = Model.from_pretrained(self.checkpoint, map_location=torch.device(device))
            except Exception as err:  # noqa: BLE001 (pyannote/lightning/hub raise many types)
                raise InputError(checkpoint, f"cannot load it as a pyannote.audio segmentation model ({err})") \
                    from err
        if model is None:
            raise InputError(checkpoint, "pyannote.audio could not load it (a gated hub model needs a token; "
                                         "a local path must be a pytorch_model.bin or a folder holding one)")
        spec = model.specifications
        if isinstance(spec, tuple) or str(spec.resolution).split(".")[-1] != "FRAME":
            raise InputError(checkpoint, "not a frame-level segmentation model (its specifications: "
                                         f"{spec}); give a speaker segmentation checkpoint")
        self.model = model.eval()
        self.window = float(spec.duration)
        self.powerset = bool(spec.powerset)
        self.inference = Inference(model, window="sliding", duration=self.window, step=step * self.window,
                                   batch_size=batch_size, device=torch.device(device),
                                   pre_aggregation_hook=self.speech_and_overlap)

    @staticmethod
    def speech_and_overlap(scores: np.ndarray) -> np.ndarray:
        """(chunks, frames, speakers) activities -> (chunks, frames, 2): the highest and second highest."""
        ordered = np.sort(scores, axis=-1)
        second = ordered[..., -2] if ordered.shape[-1] > 1 else np.zeros_like(ordered[..., -1])
        return np.stack([ordered[..., -1], second], axis=-1)

    def probabilities(self, samples):
        import torch

        if len(samples) < SAMPLE_RATE * 0.1:
            samples = np.pad(samples, (0, int(SAMPLE_RATE * 0.1) - len(samples)))
        out = self.inference({"waveform": torch.from_numpy(samples)[None], "sample_rate": SAMPLE_RATE})
        frames = out.sliding_window
        times = frames.start + np.arange(out.data.shape[0]) * frames.step + frames.duration / 2
        return times, np.nan_to_num(out.data, nan=0.0)

    def describe(self):
        return {**super().describe(), "checkpoint": self.checkpoint, "window_seconds": self.window,
                "powerset": self.powerset, "version": _version("pyannote.audio"),
                "frames": "the model's frames (about 17 ms), interpolated to the 20 ms grid; speech = highest, "
                          "overlap = second highest speaker activity per window, before aggregation"}


def _version(dist: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return None


def load_blackbox(kind: str, checkpoint: str | None = None, device: str = "cpu", step: float = 0.1,
                  batch_size: int = 32) -> BlackBox:
    """The black-box teacher ``kind`` (:data:`BLACKBOXES`); ``checkpoint``: pyannote's model."""
    if kind == "silero":
        return Silero(checkpoint, device)
    if kind == "pyannote":
        return Pyannote(checkpoint, device, step=step, batch_size=batch_size)
    raise InputError(None, f"teacher.kind {kind!r}: the black boxes are {BLACKBOXES} (wavlm is the workflow's "
                           "own teacher, trained by the train_teacher step)")


def dump_blackbox(kind: str, checkpoint: str | None, manifest: str | os.PathLike, out_h5: str | os.PathLike,
                  step_fraction: float = 0.1, batch_size: int = 32, device: str = "auto") -> dict:
    """The black box's logits on every file of a split's ``manifest.tsv``, in the teacher dump's layout
    (``docs/outputs.md``: one group per URI with ``logits`` (T, 4), NaN for unknown classes; no fused
    features, so only spectrogram-input proxies can learn from it), written atomically."""
    import json

    import h5py
    from tqdm import tqdm

    from proxyseg.core.atomic import atomic_path
    from proxyseg.core.audio import load_audio
    from proxyseg.core.frames import FRAME_RATE
    from proxyseg.core.provenance import provenance_json
    from proxyseg.features.wavlm import read_manifest
    from proxyseg.core.device import resolve_device

    dev = str(resolve_device(device))
    model = load_blackbox(kind, checkpoint, dev, step=step_fraction, batch_size=batch_size)
    table = read_manifest(manifest)
    summary = {"files": 0, "frames": 0, "seconds": 0.0, "teacher": model.describe()}
    with atomic_path(out_h5) as tmp, h5py.File(tmp, "w") as h5:
        for row in tqdm(table.itertuples(), total=len(table), desc=f"{kind} teacher", unit="file"):
            samples = load_audio(row.audio)
            logits = model.logits(samples)
            if logits.shape[0] != row.num_frames:
                raise InputError(row.audio, f"audio gives {logits.shape[0]} frames but {manifest} says "
                                            f"{row.num_frames}; the file changed after harmonisation: rerun it")
            group = h5.create_group(str(row.uri))
            group.create_dataset("logits", data=logits)
            group.attrs["num_frames"] = logits.shape[0]
            summary["files"] += 1
            summary["frames"] += int(logits.shape[0])
            summary["seconds"] += len(samples) / SAMPLE_RATE
        h5.attrs["classes"] = json.dumps(list(CLASSES))
        h5.attrs["known_classes"] = json.dumps(list(model.classes))
        h5.attrs["teacher"] = json.dumps(model.describe())
        h5.attrs["frame_rate"] = FRAME_RATE
        h5.attrs["provenance"] = provenance_json(stage="teacher_dump", teacher=model.describe(),
                                                 manifest=str(manifest), step_fraction=step_fraction, device=dev)
    logger.info("%s teacher: %d files, %.1f s of audio, %d frames -> %s", kind, summary["files"], summary["seconds"],
                summary["frames"], out_h5)
    return summary
