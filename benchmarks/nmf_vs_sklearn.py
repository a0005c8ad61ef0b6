"""Benchmark: proxyseg's sparse NMF (PyTorch) against scikit-learn's multiplicative-update NMF.

The matrix is a realistic one: the log-power spectrogram ``log(1 + |STFT|^2)`` (n_fft 512, win 400, hop
320: F = 257, 50 frames/s) of ``--seconds`` of audio, either synthesised (a sequence of 1-4 s segments of
voiced-speech-like harmonic sweeps, sustained harmonic chords and coloured-noise bursts over a faint noise
floor, with a fixed seed; overall RMS about 0.07, like normalised real recordings) or read from ``--audio``
(several files are concatenated).

Both solvers get the same problem, as far as scikit-learn can state it:

* cost ``0.5 ||X - W H||_F^2 + mu ||H||_1`` (beta = 2, the Euclidean case), K atoms, the same number of
  iterations (scikit-learn: ``tol=0`` so it never stops early), float32 data for both;
* scikit-learn minimises ``0.5 ||X - WH||_F^2 + alpha_H * l1_ratio * n_samples * ||H||_1`` (its
  regularisation is scaled by ``n_samples``, the number of rows of the matrix it is given: here X is
  passed as (F, T), so n_samples = F and its H is our H), hence ``alpha_H = mu / F``, ``l1_ratio=1``,
  ``alpha_W = 0``;
* scikit-learn normalises nothing, so its problem is unbounded below in the scale (shrink H, grow W):
  its solution is compared after moving the column norms of its W into the rows of its H, which leaves
  W H unchanged, with the same function (``proxyseg.dictionary.nmf.nmf_cost``, float64) as ours;
* ``init='random'`` with the same seed (scikit-learn draws from NumPy, we from torch, so the two starts
  differ but follow the same recipe: |N(0,1)| entries). A second scikit-learn run starts from *our*
  exact initial W and H (``init='custom'``) so that the final costs can also be compared from one start.

Timing: both run on the same ``--threads`` CPU cores (torch.set_num_threads and threadpoolctl's limit on
NumPy's BLAS/OpenMP pools). Warm-up is *excluded* for both: each solver first runs a few untimed
iterations on the same matrix (library loading, thread-pool start-up, first-touch allocations). Each
timed call is end to end (input conversion, initialisation, iterations, and for ours the per-iteration
cost), and the runs alternate ours / scikit-learn ``--repeats`` times; the median and the minimum are
reported, with the load average (on a shared machine the minimum is the less disturbed figure).

Two speed figures are printed: at the same number of iterations, and at equal final cost (ours run, timed,
for just the iterations it needs to reach scikit-learn's final cost; the issue's criterion). Both solvers do
the same matrix products per iteration, so the first is about 1x; the second is where the solvers differ.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from proxyseg.dictionary.nmf import nmf_cost, sparse_nmf  # noqa: E402
from proxyseg.dictionary.spectrogram import log_power_spectrogram  # noqa: E402

SR = 16000


def synth_audio(seconds: float, seed: int = 0) -> np.ndarray:
    """Mono 16 kHz float32: random 1-4 s segments of speech-like, music-like and noise-like sound."""
    rng = np.random.default_rng(seed)
    n = int(seconds * SR)
    out = 0.003 * rng.standard_normal(n)  # noise floor
    pos = 0
    while pos < n:
        seg = min(n - pos, int(rng.uniform(1.0, 4.0) * SR))
        t = np.arange(seg) / SR
        kind = rng.integers(3)
        if kind == 0:  # voiced speech-like: gliding f0 100-250 Hz, formant-shaped harmonics, syllabic AM
            f0 = rng.uniform(100, 250) * (1 + 0.15 * np.sin(2 * np.pi * rng.uniform(0.5, 2) * t))
            phase = 2 * np.pi * np.cumsum(f0) / SR
            formants = rng.uniform([300, 900, 2200], [900, 2000, 3200])
            x = np.zeros(seg)
            for h in range(1, 40):
                fh = h * f0.mean()
                if fh > 7500:
                    break
                gain = sum(np.exp(-0.5 * ((fh - fm) / 150.0) ** 2) for fm in formants) + 0.05
                x += gain / h ** 0.5 * np.sin(h * phase)
            x *= 0.5 * (1 + np.sin(2 * np.pi * rng.uniform(3, 6) * t)) ** 2
            x *= 0.4 / (np.abs(x).max() + 1e-9)
        elif kind == 1:  # music-like: a chord of 3 sustained harmonic notes with decaying harmonics
            x = np.zeros(seg)
            for midi in rng.choice(np.arange(45, 80), size=3, replace=False):
                f = 440.0 * 2 ** ((midi - 69) / 12)
                for h in range(1, 16):
                    if h * f > 7500:
                        break
                    x += (0.6 ** h) * np.sin(2 * np.pi * h * f * t + rng.uniform(0, 2 * np.pi))
            x *= np.exp(-t * rng.uniform(0.2, 1.0))
            x *= 0.3 / (np.abs(x).max() + 1e-9)
        else:  # coloured noise burst: white noise through a random spectral tilt
            spec = np.fft.rfft(rng.standard_normal(seg))
            freqs = np.fft.rfftfreq(seg, 1 / SR)
            spec *= (1 + freqs / rng.uniform(200, 3000)) ** (-rng.uniform(0.3, 1.5))
            x = np.fft.irfft(spec, n=seg)
            x *= 0.25 / (np.abs(x).max() + 1e-9)
        out[pos:pos + seg] += x
        pos += seg
    return out.astype(np.float32)


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def run_ours(X: np.ndarray, args) -> tuple[float, object]:
    _sync(args.device)
    t0 = time.perf_counter()
    res = sparse_nmf(X, args.K, beta=2.0, mu=args.mu, iterations=args.iterations, seed=args.seed,
                     device=args.device)
    _sync(args.device)
    return time.perf_counter() - t0, res


def sklearn_model(args, F: int, init: str, iterations: int):
    from sklearn.decomposition import NMF

    return NMF(n_components=args.K, solver="mu", beta_loss="frobenius", init=init, random_state=args.seed,
               max_iter=iterations, tol=0.0, alpha_W=0.0, alpha_H=args.mu / F, l1_ratio=1.0)


def run_sklearn(X: np.ndarray, args, init: str = "random", W0=None, H0=None) -> tuple[float, np.ndarray, np.ndarray]:
    model = sklearn_model(args, X.shape[0], init, args.iterations)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning: max_iter reached (tol=0 on purpose)
        W = model.fit_transform(X, W=W0, H=H0)
    return time.perf_counter() - t0, W, model.components_


def moved_norms(W: np.ndarray, H: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unit-norm columns of W, their norms moved into the rows of H (W H unchanged)."""
    norms = np.linalg.norm(W.astype(np.float64), axis=0)
    safe = np.where(norms > 0, norms, 1.0)
    return W / safe, H * norms[:, None]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--audio", nargs="+", help="audio file(s) (any soundfile format; down-mixed, resampled "
                   "to 16 kHz), concatenated and cut to --seconds; default: synthesised audio")
    p.add_argument("--seconds", type=float, default=120.0, help="seconds of audio used (default 120)")
    p.add_argument("--K", type=int, default=128)
    p.add_argument("--mu", type=float, default=1.0)
    p.add_argument("--iterations", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu", help="device for proxyseg (cpu, cuda); scikit-learn is CPU")
    p.add_argument("--threads", type=int, default=os.cpu_count(), help="CPU threads for both (default: all)")
    p.add_argument("--repeats", type=int, default=3, help="timed runs of each, alternating (median reported)")
    p.add_argument("--warmup-iterations", type=int, default=5)
    p.add_argument("--skip-same-init", action="store_true", help="skip the sklearn run from our initial W, H")
    args = p.parse_args(argv)

    from threadpoolctl import threadpool_limits

    torch.set_num_threads(args.threads)
    limiter = threadpool_limits(limits=args.threads)  # NumPy/SciPy BLAS and OpenMP pools  # noqa: F841

    if args.audio:
        from proxyseg.core.audio import load_audio

        audio = np.concatenate([load_audio(path) for path in args.audio])[:int(args.seconds * SR)]
        source = f"{len(args.audio)} file(s) concatenated, first {len(audio) / SR:.1f} s"
    else:
        audio = synth_audio(args.seconds, args.seed)
        source = f"synthetic mix, {args.seconds:.1f} s, seed {args.seed}"
    X = log_power_spectrogram(torch.from_numpy(audio)).numpy().astype(np.float32)
    F, T = X.shape
    import sklearn

    print(f"matrix: log-power spectrogram of {source}: F={F}, T={T}, mean={X.mean():.3f}, max={X.max():.2f}")
    print(f"problem: beta=2, K={args.K}, mu={args.mu}, {args.iterations} iterations, float32, seed {args.seed}")
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores visible, "
          f"{args.threads} threads for both; torch {torch.__version__}, scikit-learn {sklearn.__version__}, "
          f"numpy {np.__version__}; proxyseg device: {args.device}")

    # warm-up, untimed, for both
    warm = argparse.Namespace(**{**vars(args), "iterations": args.warmup_iterations})
    run_ours(X, warm)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sklearn_model(args, F, "random", args.warmup_iterations).fit_transform(X)

    load0 = os.getloadavg()
    t_ours, t_sk = [], []
    for _ in range(args.repeats):
        t, res = run_ours(X, args)
        t_ours.append(t)
        t, W_sk, H_sk = run_sklearn(X, args)
        t_sk.append(t)
    med_ours, med_sk = statistics.median(t_ours), statistics.median(t_sk)

    W = res.W.cpu().numpy()
    H = res.H.cpu().numpy()
    cost_ours = nmf_cost(X, W, H, 2.0, args.mu)
    Wn, Hn = moved_norms(W_sk, H_sk)
    cost_sk = nmf_cost(X, Wn, Hn, 2.0, args.mu)
    data_ours = nmf_cost(X, W, H, 2.0, 0.0)
    data_sk = nmf_cost(X, W_sk, H_sk, 2.0, 0.0)

    print()
    print(f"wall time (s), {args.repeats} alternating runs, warm-up excluded "
          f"(load average before: {load0[0]:.2f}, after: {os.getloadavg()[0]:.2f}):")
    print(f"  proxyseg sparse_nmf : median {med_ours:8.3f}  min {min(t_ours):8.3f}   "
          f"runs {', '.join(f'{t:.3f}' for t in t_ours)}")
    print(f"  sklearn NMF(mu)     : median {med_sk:8.3f}  min {min(t_sk):8.3f}   "
          f"runs {', '.join(f'{t:.3f}' for t in t_sk)}")
    print(f"  speed-up (sklearn / proxyseg): median {med_sk / med_ours:.2f}x, min {min(t_sk) / min(t_ours):.2f}x")
    print()
    print("final cost 0.5 ||X - WH||_F^2 + mu ||H||_1 (float64, W with unit-norm columns):")
    print(f"  proxyseg            : {cost_ours:.6e}   (data term {data_ours:.6e}, "
          f"mu*||H||_1 {cost_ours - data_ours:.6e}; {res.n_backtracks} W-step halvings)")
    print(f"  sklearn, random init: {cost_sk:.6e}   (data term {data_sk:.6e}, "
          f"mu*||H||_1 {cost_sk - data_sk:.6e})")
    print(f"  ratio sklearn / proxyseg: {cost_sk / cost_ours:.4f}")
    reach = next((i for i, c in enumerate(res.costs) if c <= cost_sk), None)
    if reach is None:
        print(f"  equal cost: proxyseg never reached sklearn's final cost in {args.iterations} iterations")
    else:
        # the criterion: time to a final cost equal to or below sklearn's, timed directly
        short = argparse.Namespace(**{**vars(args), "iterations": reach + 1})
        t_short = []
        for _ in range(args.repeats):
            t, res_short = run_ours(X, short)
            t_short.append(t)
        cost_short = nmf_cost(X, res_short.W.cpu().numpy(), res_short.H.cpu().numpy(), 2.0, args.mu)
        med_short = statistics.median(t_short)
        print()
        print(f"equal final cost: proxyseg stopped after {reach + 1} iterations (the first whose cost is <= "
              f"sklearn's after {args.iterations}):")
        print(f"  proxyseg            : median {med_short:8.3f}  min {min(t_short):8.3f}   final cost "
              f"{cost_short:.6e} (<= sklearn's {cost_sk:.6e}: {cost_short <= cost_sk})")
        print(f"  speed-up at equal or lower final cost (sklearn {args.iterations} it. / proxyseg {reach + 1} it.): "
              f"median {med_sk / med_short:.2f}x, min {min(t_sk) / min(t_short):.2f}x")
    if not args.skip_same_init:
        init = sparse_nmf(X, args.K, beta=2.0, mu=args.mu, iterations=0, seed=args.seed)
        W0 = init.W.numpy().astype(np.float32)
        H0 = init.H.numpy().astype(np.float32)
        t_same, W_s2, H_s2 = run_sklearn(X, args, init="custom", W0=W0.copy(), H0=H0.copy())
        Wn2, Hn2 = moved_norms(W_s2, H_s2)
        cost_same = nmf_cost(X, Wn2, Hn2, 2.0, args.mu)
        print(f"  sklearn, from our initial W, H: {cost_same:.6e}   (data term "
              f"{nmf_cost(X, W_s2, H_s2, 2.0, 0.0):.6e}; ratio to ours {cost_same / cost_ours:.4f}; "
              f"{t_same:.3f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
