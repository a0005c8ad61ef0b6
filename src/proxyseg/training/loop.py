"""The one training loop of the teacher, the proxies and the demo WavLM's pre-training (the pattern of
SpeechBrain's Brain or asteroid's System, without Lightning).

A stage builds its data, model, optimizer, lr schedule and weight average, and says what one unit of
training is: an epoch (:meth:`Loop.epochs`: a pass over a loader, then a dev evaluation) or a step. The loop
runs the units and does what every stage did alike: the optimiser step (gradient clipping, schedule, EMA),
the best weights on dev, patience, a log line and a curve row per unit, and, after each unit, the state
that lets a killed job resume (:mod:`proxyseg.training.resume`). :func:`write_outputs` writes the curve,
``train.json`` and ``model.pt`` once training has ended.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import sys
import time
from pathlib import Path
from typing import Callable, Sequence

import torch
from tqdm import tqdm

from proxyseg.core.atomic import atomic_open
from proxyseg.core.figures import save_figure
from proxyseg.core.provenance import without_machine
from proxyseg.training.resume import ResumeFile, rng_state, set_rng_state


class Loop:
    """Trains ``model`` with ``optimizer`` (and an optional per-step ``scheduler``, ``ema`` weight average
    and gradient norm clip) for ``units`` units (``unit``: "epoch" or "step"), see :meth:`fit`.

    After :meth:`fit`: ``rows`` (one per unit: the unit's number, the train unit's numbers, ``dev_*``, lr,
    seconds), ``best_epoch``, ``best_loss``, ``best_dev`` and ``best_state`` (CPU copies of the best
    weights: of the EMA where there is one), ``steps`` and ``train_seconds`` (training without dev)."""

    def __init__(self, name: str, model: torch.nn.Module, optimizer: torch.optim.Optimizer, scheduler=None,
                 ema=None, *, clip_norm: float | None = None, unit: str = "epoch",
                 loaders: Sequence = (), log: logging.Logger | None = None):
        self.name, self.model, self.optimizer, self.scheduler, self.ema = name, model, optimizer, scheduler, ema
        self.clip_norm, self.unit = clip_norm, unit
        self.generators = [loader.generator for loader in loaders if loader.generator is not None]
        self.log = log or logging.getLogger("proxyseg.training")
        self.rows: list[dict] = []
        self.best_loss, self.best_epoch, self.best_state, self.best_dev = math.inf, 0, None, {}
        self.stopped, self.steps, self.train_seconds, self.units = False, 0, 0.0, 0
        self.resume: ResumeFile | None = None
        self._earlier_seconds, self._started = 0.0, time.time()

    @property
    def scored(self) -> torch.nn.Module:
        """The model evaluated on dev and saved: the weight average where there is one."""
        return self.model if self.ema is None else self.ema.module

    @property
    def elapsed(self) -> float:
        """Seconds since :meth:`fit` started, the runs before a resume included."""
        return self._earlier_seconds + time.time() - self._started

    def optimise(self, loss: torch.Tensor) -> None:
        """One optimiser step on ``loss``, then the lr schedule and the weight average."""
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.clip_norm is not None:
            params = [p for group in self.optimizer.param_groups for p in group["params"]]
            torch.nn.utils.clip_grad_norm_(params, self.clip_norm)
        self.optimizer.step()
        if self.scheduler is not None:
            self.scheduler.step()
        if self.ema is not None:
            self.ema.update_parameters(self.model)
        self.steps += 1

    def epochs(self, loader, batch_loss: Callable) -> Callable[[int], dict]:
        """A unit for :meth:`fit` that is one pass over ``loader`` (its dataset's crops of that epoch).

        ``batch_loss(batch)`` returns (the loss to minimise, its sum over the batch as a number, the count
        it is summed over); the epoch's train loss is the sum over the count, not a mean of batch means."""

        def epoch(n: int) -> dict:
            loader.dataset.set_epoch(n)
            self.model.train()
            total, count = 0.0, 0
            bar = tqdm(loader, desc=f"{self.name} epoch {n}", file=sys.stderr, leave=False, dynamic_ncols=True,
                       mininterval=1.0)
            for batch in bar:
                loss, loss_sum, items = batch_loss(batch)
                self.optimise(loss)
                total += float(loss_sum)
                count += int(items)
                bar.set_postfix(loss=f"{total / max(count, 1):.4f}")
            bar.close()
            train_loss = total / count if count else float("nan")
            if count and not math.isfinite(train_loss):
                raise RuntimeError(f"{self.name} training diverged at epoch {n} (train loss {train_loss}); "
                                   "try a lower lr")
            return {"train_loss": train_loss}

        return epoch

    def fit(self, units: int, train_unit: Callable[[int], dict], evaluate: Callable | None = None,
            patience: int | None = None, resume: ResumeFile | None = None,
            report: Callable[[dict, bool], None] | None = None) -> Loop:
        """Run ``train_unit(n)`` (its numbers go into the row) for n = 1 .. ``units``.

        With ``evaluate(model) -> {"loss": ..., other terms}``: the dev loss after each unit picks the best
        weights and stops training ``patience`` units after the last improvement. With ``resume``: the
        state is saved after each unit and a matching saved state is continued from. ``report(row,
        improved)`` logs a unit (default: the epoch line of the teacher and the proxies)."""
        self.units, self.resume, self._started = units, resume, time.time()
        state = resume.load() if resume is not None else None
        if state is not None:
            self.load_state_dict(state)
            self.log.info("%s: resuming after %s %d, saved by a run that did not finish (%s)",
                          self.name, self.unit, len(self.rows), resume.path)
        report = report or self.report
        n = len(self.rows)
        while n < units and not self.stopped:
            n += 1
            t0 = time.time()
            row = {self.unit: n, **train_unit(n)}
            self.train_seconds += time.time() - t0
            improved = False
            if evaluate is not None:
                dev = evaluate(self.scored)
                improved = dev["loss"] < self.best_loss
                if improved:
                    self.best_loss, self.best_epoch, self.best_dev = dev["loss"], n, dev
                    self.best_state = {k: v.detach().cpu().clone() for k, v in self.scored.state_dict().items()}
                row.update({f"dev_{k}": v for k, v in dev.items()})
                self.stopped = patience is not None and n - self.best_epoch >= patience
            row.update(lr=self.optimizer.param_groups[0]["lr"], seconds=time.time() - t0)
            self.rows.append(row)
            if resume is not None:
                resume.save(self.state_dict())
            report(row, improved)
            if self.stopped:
                self.log.info("%s: early stop after %s %d (no dev improvement for %d %ss)", self.name, self.unit,
                              n, patience, self.unit)
        return self

    def report(self, row: dict, improved: bool) -> None:
        terms = [k for k in row if k.startswith("dev_") and k != "dev_loss"]
        detail = " (" + " ".join(f"{k[4:]} {row[k]:.4f}" for k in terms) + ")" if terms else ""
        self.log.info("%s %s %d/%d: train %.4f dev %.4f%s%s (best %.4f @ %d) %.1f s", self.name, self.unit,
                      row[self.unit], self.units, row["train_loss"], row["dev_loss"], detail,
                      " *" if improved else "", self.best_loss, self.best_epoch, row["seconds"])

    def state_dict(self) -> dict:
        """Everything a resumed run needs to go on as if it had never stopped."""
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scheduler": None if self.scheduler is None else self.scheduler.state_dict(),
                "ema": None if self.ema is None else self.ema.state_dict(),
                "best": [self.best_loss, self.best_epoch, self.best_state, self.best_dev], "rows": self.rows,
                "stopped": self.stopped, "steps": self.steps, "train_seconds": self.train_seconds,
                "seconds": self.elapsed, "rng": rng_state(self.generators)}

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        if self.ema is not None:
            self.ema.load_state_dict(state["ema"])
        self.best_loss, self.best_epoch, self.best_state, self.best_dev = state["best"]
        self.rows, self.stopped, self.steps = state["rows"], state["stopped"], state["steps"]
        self.train_seconds, self._earlier_seconds = state["train_seconds"], state["seconds"]
        set_rng_state(state["rng"], self.generators)

    def best_model(self, hint: str) -> torch.nn.Module:
        """A CPU copy of the model with the best weights; an error (``hint``: what to check) if no epoch
        had a finite dev loss."""
        if self.best_state is None:
            raise RuntimeError(f"{self.name} training produced no finite dev loss: {hint}")
        model = copy.deepcopy(self.model).cpu()
        model.load_state_dict(self.best_state)
        return model

    def summary(self) -> dict:
        """The best epoch and how training went, the head of ``train.json``."""
        best_row = next(r for r in self.rows if r[self.unit] == self.best_epoch)
        return {"best_epoch": self.best_epoch, "best_dev_loss": self.best_loss,
                **{f"best_dev_{k}": v for k, v in self.best_dev.items() if k != "loss"},
                "best_train_loss": best_row["train_loss"], "epochs_run": len(self.rows),
                "stopped_early": len(self.rows) < self.units}


#: How a curve column is written (the others, losses, ``.6f``).
_FORMATS = {"epoch": "d", "step": "d", "lr": ".6g", "seconds": ".2f"}


def write_curve_tsv(path: str | Path, rows: list[dict], columns: Sequence[str]) -> None:
    with atomic_open(path) as handle:
        handle.write("\t".join(columns) + "\n")
        for r in rows:
            handle.write("\t".join(format(r[c], _FORMATS.get(c, ".6f")) for c in columns) + "\n")


def write_curve_png(path: str | Path, rows: list[dict], best_epoch: int, title: str, ylabel: str,
                    terms: dict[str, str] | None = None) -> None:
    """Train and dev loss per epoch with the best epoch marked; with ``terms`` (row key -> label), a second
    panel with those dev loss terms."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(10 if terms else 6, 4), dpi=100)
    FigureCanvasAgg(fig)
    epochs = [r["epoch"] for r in rows]
    ax = fig.add_subplot(1, 2 if terms else 1, 1)
    ax.plot(epochs, [r["train_loss"] for r in rows], marker=".", label="train")
    ax.plot(epochs, [r["dev_loss"] for r in rows], marker=".", label="dev")
    best = next((r for r in rows if r["epoch"] == best_epoch), None)
    if best is not None:
        ax.axvline(best_epoch, color="grey", linestyle="--", linewidth=1)
        ax.plot([best_epoch], [best["dev_loss"]], marker="*", markersize=12, color="C3",
                label=f"best (epoch {best_epoch})")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    axes = [ax]
    if terms:
        ax2 = fig.add_subplot(1, 2, 2)
        for key, label in terms.items():
            ax2.plot(epochs, [r[key] for r in rows], marker=".", label=label)
        if all(r[k] > 0 for r in rows for k in terms):
            ax2.set_yscale("log")
        ax2.set_title("dev loss terms (unweighted)")
        axes.append(ax2)
    for a in axes:
        a.xaxis.set_major_locator(MaxNLocator(integer=True))
        a.set_xlabel("epoch")
        a.grid(alpha=0.3)
        a.legend()
    save_figure(fig, path)


def write_outputs(out_dir: Path, loop: Loop, record: dict, hparams: dict, prov: dict, columns: Sequence[str],
                  title: str, ylabel: str, terms: dict[str, str] | None = None) -> None:
    """``curve.tsv``, ``curve.png``, ``train.json`` (``record``) and, last, ``model.pt`` (the best weights,
    ``hparams`` and the provenance less time and host, so identical runs give identical bytes); each under
    a temporary name, then renamed. Then the resume state goes: the job is done."""
    write_curve_tsv(out_dir / "curve.tsv", loop.rows, columns)
    write_curve_png(out_dir / "curve.png", loop.rows, loop.best_epoch, title, ylabel, terms)
    with atomic_open(out_dir / "train.json") as handle:
        json.dump(record, handle, indent=2, default=str)
        handle.write("\n")
    with atomic_open(out_dir / "model.pt", "wb") as handle:  # a file object: bytes independent of the file name
        torch.save({"state_dict": loop.best_state, "hparams": hparams,
                    "provenance": {**without_machine(prov), "epoch": loop.best_epoch, "dev_loss": loop.best_loss}},
                   handle)
    if loop.resume is not None:
        loop.resume.remove()
