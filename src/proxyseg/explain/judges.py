"""The models that judge an explanation: the model the proxy explains, run on waveforms.

A judge hears a clip (the segment in its own context window), gives per-frame **logits** on the 20 ms
grid (``(B, 4, T)``, NaN for a class it does not know), and ranks the segment's STFT bins by its own
evidence for a class (the strong baseline of the faithfulness test): the signed gradient x input where the
judge has gradients (the demo teacher), occlusion of time-frequency patches where it has none (a black box).
"""

from __future__ import annotations

import numpy as np

from proxyseg.core.frames import CLASSES, HOP

__all__ = ["Judge", "TeacherJudge", "BlackBoxJudge", "occlusion_saliency"]


class Judge:
    """Interface: ``name``, ``classes``, ``context(segment_seconds) -> (before, after)`` seconds of audio the
    judge hears around a segment, ``logits(wavs)``, ``saliency(wav, c, seg, decided, n_fft, win_length)``.
    ``features(wavs)``: what a WavLM-input proxy reads (the teacher's fused features), or None."""

    name = "judge"
    classes: tuple[str, ...] = CLASSES

    def context(self, segment_seconds: float) -> tuple[float, float]:
        return 0.0, 0.0

    def logits(self, wavs: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def features(self, wavs: np.ndarray):
        return None

    def saliency(self, wav: np.ndarray, c: int, seg: slice, decided: np.ndarray, n_fft: int,
                 win_length: int) -> np.ndarray:
        """(F, T_seg) signed evidence for class ``c`` of each bin of the segment's frames ``seg``."""
        return occlusion_saliency(self, wav, c, seg, decided, n_fft, win_length)


def occlusion_saliency(judge: Judge, wav: np.ndarray, c: int, seg: slice, decided: np.ndarray, n_fft: int,
                       win_length: int, bands: int = 16, chunks: int = 4) -> np.ndarray:
    """Occlusion for judges without gradients: the segment's bins cut into ``bands`` x ``chunks``
    time-frequency patches; each patch is zeroed in turn and its score is the judge's mean logit drop over
    the decided frames, shared by the patch's bins in proportion to their energy (so that ranking bins by
    score ranks patches by drop per unit of energy, the loudest bins of a patch first)."""
    import torch

    from proxyseg.dsp import istft, stft

    spec = stft(torch.from_numpy(np.ascontiguousarray(wav, dtype=np.float32)), n_fft=n_fft, win_length=win_length)
    F_, T = spec.shape[0], seg.stop - seg.start
    f_edges = np.linspace(0, F_, bands + 1).astype(int)
    t_edges = np.linspace(0, T, min(chunks, T) + 1).astype(int)
    patches = [(f0, f1, t0, t1) for f0, f1 in zip(f_edges[:-1], f_edges[1:]) for t0, t1 in zip(t_edges[:-1], t_edges[1:])
               if f1 > f0 and t1 > t0]
    gains = torch.ones((len(patches) + 1, *spec.shape))
    for i, (f0, f1, t0, t1) in enumerate(patches):
        gains[i + 1, f0:f1, seg.start + t0:seg.start + t1] = 0.0
    wavs = istft(spec[None] * gains, length=len(wav), n_fft=n_fft, win_length=win_length).numpy()
    lg = judge.logits(wavs)[:, c, seg][:, decided]
    drops = lg[0].mean() - lg[1:].mean(axis=1)
    energy = spec[:, seg].abs().square().double().numpy()
    out = np.zeros((F_, T))
    for d, (f0, f1, t0, t1) in zip(drops, patches):
        e = energy[f0:f1, t0:t1]
        out[f0:f1, t0:t1] = d * e / max(float(e.sum()), 1e-20)
    return out


class TeacherJudge(Judge):
    """The demo's explained model on waveforms: WavLM (the feature cache's layers) -> the teacher's fusion
    and TCN. It hears the teacher's training crop centred on the segment."""

    name = "teacher"

    def __init__(self, teacher_pt, wavlm: str, features_h5, device: str = "auto"):
        import h5py

        from proxyseg.features.wavlm import load_wavlm
        from proxyseg.core.device import resolve_device
        from proxyseg.teacher.model import load_teacher

        self.device = resolve_device(device)
        self.teacher, hparams = load_teacher(teacher_pt, self.device)
        self.crop_seconds = float(hparams.get("crop_frames", 200)) * HOP / 16000
        self.wavlm = str(wavlm)
        with h5py.File(features_h5, "r") as h5:
            self.layers = [int(i) for i in np.atleast_1d(h5.attrs["layers"])]
            do_normalize = bool(h5.attrs.get("do_normalize", False))  # as the cache the teacher learned from
        self.net = load_wavlm(self.wavlm, normalize=do_normalize).to(self.device).eval()

    def context(self, segment_seconds):
        pad = max(0.0, (self.crop_seconds - segment_seconds) / 2)
        return pad, pad

    def _forward(self, wav):
        import torch

        hidden = self.net(wav, output_hidden_states=True).hidden_states
        states = torch.stack([hidden[j] for j in self.layers], dim=2)
        return self.teacher(states)

    def _batched(self, wavs, which: int, batch: int = 16):
        """The teacher's output ``which`` (0: logits, 1: fused features) for ``wavs``, ``batch`` at a time."""
        import torch

        out = []
        with torch.no_grad():
            for i in range(0, len(wavs), batch):
                w = torch.from_numpy(np.ascontiguousarray(wavs[i:i + batch], dtype=np.float32)).to(self.device)
                out.append(self._forward(w)[which].cpu())
        return torch.cat(out)

    def logits(self, wavs):
        return self._batched(wavs, 0).double().numpy()

    def features(self, wavs):
        return self._batched(wavs, 1).float()

    def saliency(self, wav, c, seg, decided, n_fft, win_length):
        """Signed gradient x input of the class logit (mean over the decided frames) with respect to each
        bin's magnitude: positive where the bin speaks for the class, negative where it speaks against."""
        import torch

        from proxyseg.dsp import istft, stft

        x = torch.as_tensor(np.ascontiguousarray(wav, dtype=np.float32), device=self.device)
        spec = stft(x, n_fft=n_fft, win_length=win_length)
        mag = spec.abs().detach().requires_grad_(True)
        phase = torch.polar(torch.ones_like(mag), spec.angle()).detach()
        with torch.enable_grad():
            y = istft(mag * phase, length=x.shape[0], n_fft=n_fft, win_length=win_length)
            logits, _ = self._forward(y[None])
            frames = torch.arange(seg.start, seg.stop, device=self.device)[torch.from_numpy(decided)]
            logits[0, c, frames].mean().backward()
        return (mag.grad * mag).detach()[:, seg].double().cpu().numpy()


class BlackBoxJudge(Judge):
    """A pre-trained segmenter (:mod:`proxyseg.teacher.blackbox`): pyannote hears its own 5 s window
    centred on the segment; Silero, whose state runs over the file, a warm-up of the audio before it."""

    name = "blackbox"
    WARMUP_SECONDS = 3.0

    def __init__(self, kind: str, checkpoint: str | None = None, device: str = "auto"):
        from proxyseg.teacher.blackbox import load_blackbox
        from proxyseg.core.device import resolve_device

        self.model = load_blackbox(kind, checkpoint, str(resolve_device(device)))
        self.kind = kind
        self.classes = tuple(self.model.classes)

    def context(self, segment_seconds):
        window = getattr(self.model, "window", None)
        if window:  # pyannote: its own window
            pad = max(0.0, (float(window) - segment_seconds) / 2)
            return pad, pad
        return self.WARMUP_SECONDS, 0.0

    def logits(self, wavs):
        return np.stack([self.model.logits(w).astype(np.float64).T for w in wavs])
