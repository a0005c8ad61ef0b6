"""One training step (forward, backward, Adam) of the teacher and of a proxy, on CPU: the TCN blocks'
written-out convolutions (``proxyseg.nn.tcn``) against the same blocks run through ``nn.Conv1d``.

    python benchmarks/tcn_step.py                    # the demo's shapes: batch 32 x 4 s, L=5, D=256
    python benchmarks/tcn_step.py --threads 1 --layers 25 --dim 1024

Both variants share the weights and inputs; the script checks their outputs agree, then alternates
them ``--repeats`` times (``--steps`` steps each) and keeps the best time of each, since these machines
are noisy. Prints milliseconds per step and the ratio.
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from proxyseg.proxy.loss import distillation_loss
from proxyseg.proxy.model import Proxy
from proxyseg.nn.tcn import TemporalBlock
from proxyseg.teacher.model import Teacher

WRITTEN_OUT = TemporalBlock.forward


def through_conv1d(self, x):
    return x + self.net(x)


def teacher_step(args):
    model = Teacher(args.layers, args.dim)
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    states = torch.randn(args.batch, args.frames, args.layers, args.dim).half()
    targets = (torch.rand(args.batch, 4, args.frames) > 0.5).float()

    def step():
        logits, _ = model(states.float())
        loss = F.binary_cross_entropy_with_logits(logits, targets)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return logits
    return model, step


def proxy_step(args):
    dictionary = torch.rand(args.n_freq, args.components)
    model = Proxy(args.dim, dictionary / dictionary.norm(dim=0), "fixed")
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    inp = torch.randn(args.batch, args.dim, args.frames)
    spec = torch.rand(args.batch, args.n_freq, args.frames)
    teacher_logits = torch.randn(args.batch, 4, args.frames)

    def step():
        out = model(inp)
        loss = distillation_loss(out, teacher_logits, spec)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        return out["logits"]
    return model, step


def timed(step, n):
    start = time.perf_counter()
    for _ in range(n):
        step()
    return (time.perf_counter() - start) / n * 1000


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--frames", type=int, default=200, help="crop length in frames (4 s at 50 frames/s)")
    ap.add_argument("--layers", type=int, default=5)
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--n-freq", type=int, default=257)
    ap.add_argument("--components", type=int, default=128)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=4)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"{args.threads} thread(s), batch {args.batch} x {args.frames} frames, L={args.layers}, D={args.dim}")
    for name, make in (("teacher", teacher_step), ("proxy", proxy_step)):
        torch.manual_seed(0)
        model, step = make(args)
        with torch.no_grad():  # same weights, same input: the two paths agree before anything is timed
            block = next(m for m in model.modules() if isinstance(m, TemporalBlock))
            x = torch.randn(2, block.net[0].in_channels, 50)
            assert torch.allclose(WRITTEN_OUT(block, x), through_conv1d(block, x), atol=1e-5)
        best = {"written out": float("inf"), "nn.Conv1d": float("inf")}
        for _ in range(args.repeats):
            for label, forward in (("written out", WRITTEN_OUT), ("nn.Conv1d", through_conv1d)):
                TemporalBlock.forward = forward
                step()  # warm-up after switching
                best[label] = min(best[label], timed(step, args.steps))
        TemporalBlock.forward = WRITTEN_OUT
        print(f"{name:8s} written out {best['written out']:6.1f} ms/step   nn.Conv1d {best['nn.Conv1d']:6.1f} ms/step"
              f"   ratio {best['nn.Conv1d'] / best['written out']:.2f}")


if __name__ == "__main__":
    main()
