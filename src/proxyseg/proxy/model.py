"""Proxy network: ``H = ReLU(Psi(input))`` are NMF activations, ``y = Theta H`` the class logits and
``X_hat = W H`` the spectrogram reconstruction, so every decision is a sum over dictionary atoms."""

from __future__ import annotations

import os
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from proxyseg.core.errors import InputError
from proxyseg.core.frames import CLASSES
from proxyseg.core.safeload import load_checkpoint
from proxyseg.nn.tcn import TCN, count_parameters
from proxyseg.settings import DICTIONARY_MODES
from proxyseg.settings import Proxy as ProxySettings

#: METHOD §5: a smaller TCN than the teacher's (3 blocks x 2 repeats).
PSI_DEFAULTS = {k: getattr(ProxySettings, k) for k in ProxySettings.PSI}  # the proxy settings' defaults

#: How the dictionary W is obtained:
#: fixed - the pre-learned NMF dictionary, frozen (the paper's "pre-learned W");
#: learned - trained jointly from the pre-learned W, kept non-negative with unit-norm columns (L2I's choice);
#: learned_random - the authors' code: trained from a random start, unconstrained.


def normalise_columns(w: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    return w / (w.norm(dim=0, keepdim=True) + eps)


class Proxy(nn.Module):
    """``forward(inp (B, C, T)) -> {"logits" (B, 4, T), "H" (B, K, T), "X_hat" (B, F, T)}``."""

    def __init__(self, in_channels: int, dictionary: torch.Tensor, mode: str = "fixed", seed: int = 0,
                 num_classes: int = len(CLASSES), **psi: Any):
        super().__init__()
        if mode not in DICTIONARY_MODES:
            raise ValueError(f"dictionary mode {mode!r}: choose one of {DICTIONARY_MODES}")
        unknown = set(psi) - set(PSI_DEFAULTS)
        if unknown:
            raise TypeError(f"unknown proxy hyper-parameters: {sorted(unknown)}")
        psi = {**PSI_DEFAULTS, **psi}
        n_freq, k = dictionary.shape
        self.mode = mode
        self.hparams = {"in_channels": int(in_channels), "n_freq": int(n_freq), "components": int(k),
                        "num_classes": int(num_classes), "mode": mode, **{a: int(b) for a, b in psi.items()}}
        self.psi = TCN(in_channels, k, **psi)
        self.theta = nn.Conv1d(k, num_classes, 1)  # per-frame Linear K -> 4
        w = dictionary.detach().clone().float()
        if mode == "fixed":
            self.register_buffer("w_param", w)
        else:
            if mode == "learned_random":
                gen = torch.Generator().manual_seed(seed)
                w = torch.rand(w.shape, generator=gen)
            self.w_param = nn.Parameter(w)

    @property
    def W(self) -> torch.Tensor:
        """The dictionary in use (F, K)."""
        if self.mode == "learned":
            return normalise_columns(F.relu(self.w_param))
        return self.w_param

    def forward(self, inp: torch.Tensor) -> dict[str, torch.Tensor]:
        h = F.relu(self.psi(inp))
        return {"logits": self.theta(h), "H": h, "X_hat": torch.einsum("fk,bkt->bft", self.W, h)}

    def num_parameters(self) -> int:
        return count_parameters(self)

    @classmethod
    def from_checkpoint(cls, ckpt: dict) -> "Proxy":
        hp = ckpt["hparams"]
        psi = {k: hp[k] for k in PSI_DEFAULTS}
        dummy = torch.zeros(hp["n_freq"], hp["components"])
        model = cls(hp["in_channels"], dummy, hp["mode"], num_classes=hp["num_classes"], **psi)
        model.load_state_dict(ckpt["state_dict"])
        return model


def load_proxy(path: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[Proxy, dict]:
    """``model.pt`` / ``proxy.pt`` -> (model in eval mode, checkpoint); weights only, never code, and a
    checkpoint that is not a proxy's is an :class:`InputError` naming the file."""
    ckpt = load_checkpoint(path, "proxy checkpoint")
    try:
        model = Proxy.from_checkpoint(ckpt)
    except (KeyError, TypeError, RuntimeError, ValueError, AttributeError) as err:
        raise InputError(path, f"not a proxyseg proxy checkpoint, or another proxy's ({type(err).__name__}: "
                               f"{err}); export the model folder again") from err
    model = model.to(device).eval()
    return model, ckpt
