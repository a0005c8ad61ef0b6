"""`proxyseg segment` speed and memory on one CPU core: real-time factor without and with the report, and
the black box's own time on the same file where the model folder carries one.

    python benchmarks/segment_speed.py --model results/export/spec_fixedW               # 10 min of audio
    python benchmarks/segment_speed.py --model results/export/spec_fixedW --minutes 60  # the 1-hour file

Writes a synthetic recording (speech-like harmonic bursts, music-like chords and noise at several levels;
``--audio`` takes a real file instead), then runs ``proxyseg --threads 1 segment`` pinned to one core with
``taskset -c 0`` under ``/usr/bin/time -v``: once with ``--no-report --no-teacher`` (the proxy alone), once
with the report, and once with the black box beside the proxy when the model has one. Prints wall seconds,
the real-time factor (wall / audio duration; Silero's published figure is 0.0127 on one thread) and peak
resident memory. Each run starts a fresh process, so the figures include Python's and torch's start-up; a
first run on 10 s of audio measures that start-up, and the net factor is (wall - start-up) / (duration - 10 s).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

SR = 16000


def synthetic(path: Path, minutes: float, seed: int = 0) -> float:
    """Write ``minutes`` of 16 kHz audio in 10 s blocks of speech-like, music-like and noise sound."""
    rng = np.random.default_rng(seed)
    n_blocks = max(1, int(round(minutes * 6)))
    with sf.SoundFile(str(path), "w", SR, 1, subtype="PCM_16") as f:
        t = np.arange(10 * SR) / SR
        for i in range(n_blocks):
            kind = i % 3
            if kind == 0:  # harmonic bursts with a moving pitch, 4 per second
                f0 = 120 + 40 * np.sin(2 * np.pi * 0.5 * t)
                phase = 2 * np.pi * np.cumsum(f0) / SR
                x = sum(np.sin(k * phase) / k for k in range(1, 12)) * (np.sin(2 * np.pi * 2 * t) > 0)
            elif kind == 1:  # a chord
                x = sum(np.sin(2 * np.pi * fr * t) for fr in (220, 277, 330, 440))
            else:
                x = rng.standard_normal(t.size)
            x = 0.1 * 10 ** (rng.uniform(-20, 0) / 20) * x / (np.abs(x).max() + 1e-9)
            f.write(x.astype(np.float32))
    return n_blocks * 10.0


def run(cmd: list[str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of ``cmd`` under /usr/bin/time -v, pinned to core 0."""
    full = ["/usr/bin/time", "-v"] + (["taskset", "-c", "0"] if shutil.which("taskset") else []) + cmd
    proc = subprocess.run(full, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr[-3000:]}")
    wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (\S+)", proc.stderr).group(1)
    parts = [float(p) for p in wall.split(":")]
    seconds = sum(p * 60 ** i for i, p in enumerate(reversed(parts)))
    rss = float(re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr).group(1)) / 1024
    return seconds, rss


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, type=Path, help="an exported model folder")
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--audio", type=Path, help="a real recording instead of the synthetic one")
    a = ap.parse_args(argv)
    settings = json.loads((a.model / "settings.json").read_text())
    exe = shutil.which("proxyseg") or str(Path(sys.executable).with_name("proxyseg"))
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if a.audio:
            audio = a.audio
            seconds = sf.info(str(audio)).duration
        else:
            audio = tmp / "bench.wav"
            seconds = synthetic(audio, a.minutes)
        print(f"model {a.model} (input {settings['input']}); audio {seconds / 60:.1f} min; one core, one thread")
        # start-up (Python, torch, the model) measured on 10 s of audio, so that the net factor leaves it out
        short = tmp / "startup.wav"
        startup_seconds = synthetic(short, 10 / 60, seed=1)
        startup, _ = run([exe, "--threads", "1", "segment", str(short), "--model", str(a.model), "--out",
                          str(tmp / "startup"), "--device", "cpu", "--no-report", "--no-teacher"])
        print(f"{'start-up (10 s of audio, no report)':45s} {startup:8.1f} s")
        rows = [("proxy, no report", ["--no-report", "--no-teacher"]), ("proxy + report", ["--no-teacher"])]
        if settings.get("blackbox"):
            rows.append((f"proxy + {settings['blackbox']['kind']} beside it, no report", ["--no-report"]))
        for name, flags in rows:
            out = tmp / re.sub(r"\W+", "_", name)
            wall, rss = run([exe, "--threads", "1", "segment", str(audio), "--model", str(a.model), "--out", str(out),
                             "--device", "cpu", *flags])
            net = max(0.0, wall - startup) / max(seconds - startup_seconds, 1e-9)
            print(f"{name:45s} {wall:8.1f} s   real-time factor {wall / seconds:.4f} "
                  f"(net of start-up {net:.4f})   peak {rss:7.0f} MB")


if __name__ == "__main__":
    main()
