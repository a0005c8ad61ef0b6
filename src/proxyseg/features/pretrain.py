"""Self-supervised pre-training of the demo's small WavLM: masked prediction of log-mel frames.

The offline demo cannot download microsoft/wavlm-large, and a WavLM with random weights gives features
that carry less than a plain spectrogram. This trains the demo's tiny WavLM briefly, without labels, on
the demo's *training* audio, in the spirit of WavLM/HuBERT: spans of the CNN features are replaced by the
model's mask embedding and the transformer predicts, through a linear head that is thrown away, the
log-mel frames it cannot see (standardised per band over the training audio). The number of steps is
fixed (not a time budget), so the same seed and audio give the same model on any machine.

With ``normalize`` (the saved model's ``do_normalize``, :func:`proxyseg.features.demo_wavlm.demo_do_normalize`) every
crop is normalised to zero mean and unit variance before the model sees it (and before its log-mel
target is computed), exactly as :func:`proxyseg.features.wavlm.load_wavlm` normalises each chunk at extraction.

It is a demo stand-in, not WavLM Large: a few hundred steps on minutes of synthetic audio.
"""

from __future__ import annotations

import logging
from typing import Sequence

import numpy as np
import torch

from proxyseg.core.errors import InputError
from proxyseg.core.figures import save_figure
from proxyseg.core.frames import HOP, SAMPLE_RATE, WIN, num_frames
from proxyseg.dsp import stft
from proxyseg.settings import DemoPretrain
from proxyseg.training.loop import Loop, write_curve_tsv

log = logging.getLogger("proxyseg.features.pretrain")

#: Defaults of ``features.demo_pretrain``; ``steps: 0`` keeps the random initialisation.
def pretrain_settings(settings: DemoPretrain | dict | None) -> DemoPretrain:
    """Defaults filled in and checked (:class:`proxyseg.settings.DemoPretrain`)."""
    s = DemoPretrain.parse(settings, "features.demo_pretrain")
    if s.crop_seconds * SAMPLE_RATE < WIN + HOP:
        raise InputError(None, f"features.demo_pretrain.crop_seconds {s.crop_seconds}: at least "
                               f"{(WIN + HOP) / SAMPLE_RATE} s (two WavLM frames)")
    return s


def mel_filterbank(n_mels: int, n_fft: int = 512, sr: int = SAMPLE_RATE) -> torch.Tensor:
    """(n_mels, n_fft // 2 + 1) triangular filters evenly spaced on the HTK mel scale, 0 Hz to sr / 2."""
    mel = lambda f: 2595.0 * np.log10(1.0 + f / 700.0)  # noqa: E731
    hz = lambda m: 700.0 * (10.0 ** (m / 2595.0) - 1.0)  # noqa: E731
    edges = hz(np.linspace(mel(0.0), mel(sr / 2), n_mels + 2))
    freqs = np.arange(n_fft // 2 + 1) * sr / n_fft
    lo, centre, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    fb = np.maximum(0.0, np.minimum((freqs - lo) / (centre - lo), (hi - freqs) / (hi - centre)))
    return torch.tensor(fb, dtype=torch.float32)


def log_mel(samples: torch.Tensor, fb: torch.Tensor) -> torch.Tensor:
    """``(B, N) -> (B, T, n_mels)`` log mel energies on WavLM's frame grid (``frames.num_frames(N)`` frames)."""
    spec = stft(samples)
    power = spec.real.square() + spec.imag.square()
    return torch.log(torch.einsum("mf,bft->btm", fb.to(power.device), power) + 1e-8)


def span_mask(rng: np.random.Generator, batch: int, frames: int, prob: float, span: int) -> torch.Tensor:
    """(batch, frames) bool: each frame starts a masked span of ``span`` frames with probability ``prob``;
    at least one span per row, so every example contributes to the loss."""
    starts = rng.random((batch, frames)) < prob
    for b in np.flatnonzero(~starts.any(axis=1)):
        starts[b, rng.integers(0, max(frames - span, 0) + 1)] = True
    mask = np.zeros((batch, frames), dtype=bool)
    for b, t in zip(*np.nonzero(starts)):
        mask[b, t:t + span] = True
    return torch.from_numpy(mask)


def pretrain_wavlm(net, audio: Sequence[np.ndarray], settings: dict | None = None, seed: int = 0,
                   device: torch.device | str = "cpu", normalize: bool = False) -> list[dict]:
    """Train ``net`` (a ``WavLMModel``, in place) by masked log-mel prediction on crops of ``audio``.

    ``audio``: 16 kHz mono float32 arrays (the training split). ``normalize``: each crop is normalised
    (zero mean, unit variance; ``features.normalize_waveform``) before the model and the target see it,
    and the target's per-band statistics are those of normalised audio. Returns the curve: one row per
    step with the masked loss (MSE on standardised log-mel; 1.0 is what predicting the mean scores) and
    the time.
    """
    from proxyseg.features.wavlm import normalize_waveform

    prep = normalize_waveform if normalize else (lambda w: w)
    s = pretrain_settings(settings)
    if s["steps"] == 0:
        return []
    device = torch.device(device)
    n = int(round(s["crop_seconds"] * SAMPLE_RATE))
    usable = [np.asarray(a, dtype=np.float32) for a in audio if len(a) >= n]
    if not usable:
        raise InputError(None, f"no training audio of at least {s['crop_seconds']} s to pre-train the demo WavLM on")
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    fb = mel_filterbank(s["n_mels"])
    # per-band standardisation over all the training audio (a fixed target scale)
    stats = torch.cat([log_mel(prep(torch.from_numpy(a)[None]), fb)[0] for a in usable])
    mean, std = stats.mean(0).to(device), stats.std(0).clamp_min(1e-3).to(device)
    head = torch.nn.Linear(net.config.hidden_size, s["n_mels"]).to(device)
    net.to(device).train()
    params = list(net.parameters()) + list(head.parameters())
    optimizer = torch.optim.AdamW(params, lr=s["lr"], weight_decay=s["weight_decay"])
    if s["steps"] >= 10:  # one-cycle: warm-up to lr, cosine decay (its phases need a few steps each)
        schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=s["lr"], total_steps=s["steps"],
                                                       pct_start=max(s["warmup"], 2.0 / s["steps"]))
    else:  # a handful of steps (smoke tests): constant rate
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda i: 1.0)
    lengths = np.array([len(a) for a in usable], dtype=np.float64)
    frames = num_frames(n)
    loop = Loop("demo WavLM pre-training", net, optimizer, schedule, clip_norm=5.0, unit="step", log=log)

    def step(number: int) -> dict:
        files = rng.choice(len(usable), s["batch_size"], p=lengths / lengths.sum())
        crops = []
        for k in files:
            start = int(rng.integers(0, len(usable[k]) - n + 1))
            crops.append(usable[k][start:start + n])
        wav = prep(torch.from_numpy(np.stack(crops)).to(device))  # per crop (row), like extraction per chunk
        with torch.no_grad():
            target = (log_mel(wav, fb) - mean) / std
        mask = span_mask(rng, len(crops), frames, s["mask_prob"], s["mask_span"]).to(device)
        hidden = net(wav, mask_time_indices=mask).last_hidden_state
        err = (head(hidden) - target).square().mean(-1)
        masked = err[mask].mean()
        loss = masked + s["unmasked_weight"] * err[~mask].mean() if s["unmasked_weight"] else masked
        if not torch.isfinite(loss):
            raise RuntimeError(f"demo WavLM pre-training diverged at step {number} (loss {float(loss)})")
        loop.optimise(loss)
        return {"masked_loss": float(masked.detach()), "loss": float(loss.detach())}

    def report(row: dict, improved: bool) -> None:
        if row["step"] == 1 or row["step"] % 25 == 0 or row["step"] == s["steps"]:
            recent = [r["masked_loss"] for r in loop.rows[-25:]]
            log.info("pre-training step %d/%d: masked loss %.4f (mean of last %d), %.1f s",
                     row["step"], s["steps"], sum(recent) / len(recent), len(recent), loop.elapsed)

    loop.fit(s["steps"], step, report=report)
    net.eval()
    elapsed = 0.0
    for row in loop.rows:  # the curve gives the time since the start
        elapsed += row["seconds"]
        row["seconds"] = elapsed
    return loop.rows


def write_curve(curve: list[dict], tsv_path, png_path) -> None:
    """The pre-training loss per step as TSV and as a figure (raw and smoothed)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    write_curve_tsv(tsv_path, curve, ("step", "masked_loss", "loss", "lr", "seconds"))
    fig = Figure(figsize=(6, 4), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    steps = [r["step"] for r in curve]
    losses = np.array([r["masked_loss"] for r in curve])
    ax.plot(steps, losses, alpha=0.35, label="masked loss per step")
    width = max(1, min(25, len(losses) // 5))
    if len(losses) >= width:
        smooth = np.convolve(losses, np.ones(width) / width, mode="valid")
        ax.plot(steps[width - 1:], smooth, label=f"mean of {width} steps")
    ax.axhline(1.0, color="grey", linestyle="--", linewidth=1, label="predicting the mean")
    ax.set_xlabel("step")
    ax.set_ylabel("MSE, standardised log-mel")
    ax.set_title("demo WavLM: masked log-mel prediction")
    ax.grid(alpha=0.3)
    ax.legend()
    save_figure(fig, png_path)

