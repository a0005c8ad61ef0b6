"""Throughput of WavLM feature caching against the bare model forward on the same chunks.

    python benchmarks/feature_throughput.py --size large --seconds 600 --device cuda --half   # a GPU
    python benchmarks/feature_throughput.py --size base --seconds 60 --threads 2              # a CPU

A randomly initialised WavLM of the chosen size (weights do not matter for speed) is saved with
save_pretrained; synthetic files of varied lengths are written as WAV with a manifest. Then, alternating
and keeping the best of ``--repeats``:
  * caching: ``proxyseg.features.wavlm.extract_features`` end to end (model loading, audio decoding, the batch
    plan, the forward passes, float16 conversion, HDF5 writing),
  * bare forward: ``net(wav, output_hidden_states=True)`` alone on exactly the same batches of chunks,
    prepared in memory beforehand.
Prints both in x real time (seconds of audio per second of wall time) and their ratio (throughput of
caching / throughput of the bare forward; 1.0 = no overhead), of the best and of the median runs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf
import torch

from proxyseg.features.demo_wavlm import DEMO_WAVLM, build_untrained_wavlm
from proxyseg.features.wavlm import extract_features, load_wavlm, plan_batches
from proxyseg.core.device import resolve_device
from proxyseg.core.frames import FRAME_RATE, SAMPLE_RATE, num_frames

SIZES = {
    "demo": DEMO_WAVLM,
    "base": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072,
                 feat_extract_norm="group", do_stable_layer_norm=False),
    "large": dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096,
                  feat_extract_norm="layer", do_stable_layer_norm=True),
}


def write_corpus(folder: Path, seconds: float, files: int, seed: int = 0) -> Path:
    """``files`` noise files whose lengths vary around ``seconds / files`` (two share a length)."""
    rng = np.random.default_rng(seed)
    weights = rng.uniform(0.5, 1.5, size=files)
    lengths = np.maximum(1.0, seconds * weights / weights.sum())
    if files > 1:
        lengths[1] = lengths[0]
    rows = []
    for i, length in enumerate(lengths):
        n = int(length * SAMPLE_RATE)
        path = folder / f"f{i}.wav"
        sf.write(path, (0.1 * rng.standard_normal(n)).astype(np.float32), SAMPLE_RATE)
        rows.append({"uri": f"f{i}", "audio": str(path), "duration": n / SAMPLE_RATE, "num_frames": num_frames(n)})
    manifest = folder / "manifest.tsv"
    pd.DataFrame(rows).to_csv(manifest, sep="\t", index=False)
    return manifest


@torch.inference_mode()
def bare_forward(net, batches, device, half: bool) -> float:
    """Seconds of wall time for the model's forward passes alone over pre-built batches."""
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for wav in batches:
        with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=half and device.type == "cuda"):
            net(wav, output_hidden_states=True)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="base")
    parser.add_argument("--seconds", type=float, default=60.0, help="total audio")
    parser.add_argument("--files", type=int, default=6)
    parser.add_argument("--chunk-seconds", type=float, default=20.0)
    parser.add_argument("--overlap-seconds", type=float, default=2.5)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--layers", default="all", help="all, or comma-separated hidden-state indices")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--half", action="store_true", help="float16 autocast (GPU only)")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    layers = "all" if args.layers == "all" else [int(i) for i in args.layers.split(",")]
    device = resolve_device(args.device)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model_dir = build_untrained_wavlm(tmp / "model", seed=0, **SIZES[args.size])
        manifest = write_corpus(tmp, args.seconds, args.files)
        table = pd.read_csv(manifest, sep="\t").sort_values("uri").reset_index(drop=True)
        audio_seconds = float(table["duration"].sum())
        net = load_wavlm(str(model_dir)).to(device)
        plan = plan_batches(table["num_frames"].tolist(), round(args.chunk_seconds * FRAME_RATE),
                            round(args.overlap_seconds * FRAME_RATE), args.batch_size)
        samples = [sf.read(p, dtype="float32")[0] for p in table["audio"]]
        batches = [torch.from_numpy(np.stack([samples[c.file][slice(*c.plan.samples)] for c in b])).to(device)
                   for b in plan]
        bare_forward(net, batches[:1], device, args.half)  # warm-up (allocator, kernels)
        bare, cached = [], []
        for r in range(args.repeats):
            bare.append(bare_forward(net, batches, device, args.half))
            start = time.perf_counter()
            extract_features(manifest, tmp / f"out{r}.h5", str(model_dir), layers=layers,
                             chunk_seconds=args.chunk_seconds, overlap_seconds=args.overlap_seconds,
                             batch_size=args.batch_size, device=str(device), half=args.half)
            cached.append(time.perf_counter() - start)
            (tmp / f"out{r}.h5").unlink()
    result = {
        "model": f"WavLM {args.size} (random weights)", "device": str(device),
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "cpu_threads": torch.get_num_threads(), "host": platform.node(), "half": args.half and device.type == "cuda",
        "audio_seconds": round(audio_seconds, 1), "files": args.files, "batches": len(plan),
        "chunk_seconds": args.chunk_seconds, "batch_size": args.batch_size, "layers": args.layers,
        "bare_forward_s": [round(t, 2) for t in bare], "caching_s": [round(t, 2) for t in cached],
        "bare_forward_x_realtime": round(audio_seconds / min(bare), 2),
        "caching_x_realtime": round(audio_seconds / min(cached), 2),
        "load_avg": os.getloadavg()[0],
    }
    result["ratio"] = round(min(bare) / min(cached), 3)  # best of each
    result["ratio_median"] = round(float(np.median(bare) / np.median(cached)), 3)
    print(json.dumps(result, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
