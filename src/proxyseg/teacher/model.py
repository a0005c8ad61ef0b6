"""The teacher (METHOD section 3): learned fusion of cached WavLM hidden states, then a Conv-TasNet TCN."""

from __future__ import annotations

import os
from typing import Any

import torch
from torch import nn

from proxyseg.core.device import resolve_device
from proxyseg.core.errors import InputError
from proxyseg.core.frames import CLASSES
from proxyseg.core.safeload import load_checkpoint
from proxyseg.nn.tcn import TCN, count_parameters
from proxyseg.settings import Teacher as TeacherSettings

#: METHOD section 3: bottleneck 64, hidden 128, kernel 3, 15 blocks = dilations (1, 2, 4) x 5 repeats.
TCN_DEFAULTS = {k: getattr(TeacherSettings, k) for k in TeacherSettings.TCN}  # the teacher settings' defaults


class LayerFusion(nn.Module):
    """Softmax-weighted sum of ``L`` stacked hidden states, then ``InstanceNorm1d(D)`` without affine.

    ``(B, T, L, D) -> (B, D, T)``. The weights start uniform.
    """

    def __init__(self, num_layers: int, dim: int | None = None):
        super().__init__()
        self.num_layers = num_layers
        self.logits = nn.Parameter(torch.zeros(num_layers))
        # InstanceNorm1d without affine and without running stats has no parameters and no state: the
        # same module works for any D (dim is only informative).
        self.norm = nn.InstanceNorm1d(dim or 1, affine=False, track_running_stats=False)

    def weights(self) -> torch.Tensor:
        """The ``L`` fusion weights (non-negative, sum to 1)."""
        return torch.softmax(self.logits, dim=0)

    def mix(self, states: torch.Tensor) -> torch.Tensor:
        """Weighted sum only (no normalisation): ``(B, T, L, D) -> (B, D, T)``. Pointwise in time."""
        if states.dim() != 4 or states.shape[2] != self.num_layers:
            raise ValueError(f"expected states (batch, time, {self.num_layers}, dim), got {tuple(states.shape)}")
        return torch.einsum("btld,l->bdt", states, self.weights().to(states.dtype))

    def forward(self, states: torch.Tensor) -> torch.Tensor:
        return self.norm(self.mix(states))


class Teacher(nn.Module):
    """``forward(states (B, T, L, D)) -> (logits (B, 4, T), S (B, D, T))``.

    ``S`` is the fused, instance-normalised representation the proxy reuses; ``logits`` are pre-sigmoid,
    class order ``proxyseg.core.frames.CLASSES``.
    """

    def __init__(self, num_layers: int, dim: int, num_classes: int = len(CLASSES), **tcn_hparams: Any):
        super().__init__()
        unknown = set(tcn_hparams) - set(TCN_DEFAULTS)
        if unknown:
            raise TypeError(f"unknown teacher hyper-parameters: {sorted(unknown)}")
        tcn = {**TCN_DEFAULTS, **tcn_hparams}
        self.hparams = {"num_layers": int(num_layers), "dim": int(dim), "num_classes": int(num_classes),
                        **{k: int(v) for k, v in tcn.items()}}
        self.fusion = LayerFusion(num_layers, dim)
        self.tcn = TCN(dim, num_classes, **tcn)

    @classmethod
    def from_hparams(cls, hparams: dict) -> "Teacher":
        """Rebuild from a checkpoint's ``hparams`` (extra keys such as ``crop_frames`` are ignored)."""
        keys = ("num_layers", "dim", "num_classes", *TCN_DEFAULTS)
        return cls(**{k: hparams[k] for k in keys if k in hparams})

    def forward_mixed(self, mixed: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Forward from the already layer-mixed (not yet normalised) states ``(B, D, T)``."""
        s = self.fusion.norm(mixed)
        return self.tcn(s), s

    def forward(self, states: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.forward_mixed(self.fusion.mix(states))

    def num_parameters(self) -> dict[str, int]:
        return {"total": count_parameters(self), "tcn": count_parameters(self.tcn),
                "fusion": count_parameters(self.fusion)}


def load_teacher(checkpoint: str | os.PathLike | dict, device: str | torch.device = "auto"
                 ) -> tuple[Teacher, dict]:
    """Load ``model.pt`` (``{"state_dict", "hparams", "provenance"}``) -> (model in eval mode, hparams)."""
    if isinstance(checkpoint, dict):
        ckpt = checkpoint
    else:
        ckpt = load_checkpoint(checkpoint, "teacher checkpoint")
    try:
        model = Teacher.from_hparams(ckpt["hparams"])
        model.load_state_dict(ckpt["state_dict"])
    except (KeyError, TypeError, RuntimeError, ValueError, AttributeError) as err:
        if isinstance(checkpoint, dict):
            raise
        raise InputError(checkpoint, f"not a proxyseg teacher checkpoint, or a damaged one ({type(err).__name__}: "
                                     f"{err}); train it again, or export the model folder again") from err
    model.to(resolve_device(device)).eval()
    return model, dict(ckpt["hparams"])
