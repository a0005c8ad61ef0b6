"""Checkpoints that a user may have been handed: loaded without running code.

A ``torch.save`` file is a pickle, and a pickle can name any callable (``os.system``) to run when it is
read. proxyseg's own checkpoints (teacher, proxy) hold only tensors and plain containers, so they load
with ``weights_only=True``; a black box's checkpoint (pyannote.audio's) holds a few classes of its own and
is loaded by its library with ``weights_only=False``, so before that the globals it names are checked
against the short list such a checkpoint needs.
"""

from __future__ import annotations

import os
import pickle

from proxyseg.core.errors import InputError

#: Globals a pyannote.audio segmentation checkpoint names beyond torch's weights-only set (pyannote.audio
#: 4.0 checkpoints, e.g. the one whisperx ships), by exact name or module prefix.
PYANNOTE_GLOBALS = frozenset({"typing.Any", "builtins.dict", "builtins.int", "builtins.list", "builtins.float",
                              "builtins.str", "builtins.tuple", "builtins.set", "builtins.bool",
                              "collections.defaultdict", "collections.OrderedDict",
                              "torch.torch_version.TorchVersion"})
PYANNOTE_PREFIXES = ("pyannote.audio.core.task.", "pyannote.audio.core.model.", "omegaconf.base.",
                     "omegaconf.listconfig.", "omegaconf.dictconfig.", "omegaconf.nodes.")


def load_checkpoint(path: str | os.PathLike, what: str = "checkpoint") -> dict:
    """``torch.load(path, weights_only=True)``: tensors and plain containers only, never code; a file
    that needs more, or is damaged, is an :class:`InputError` naming it."""
    import torch

    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError as err:
        raise InputError(path, f"{what} not found") from err
    except pickle.UnpicklingError as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise InputError(path, f"refused to load this {what}: it holds more than weights and settings, and "
                               f"loading it could run code ({first}). Re-create it with proxyseg, or load "
                               "it only if you trust where it came from") from err
    except (RuntimeError, EOFError, OSError, ValueError) as err:
        first = str(err).strip().split(". ")[0] or type(err).__name__  # torch's own text goes on for lines
        raise InputError(path, f"cannot read this {what}: it is damaged (e.g. cut short by an interrupted copy) or "
                               f"not a PyTorch file ({first}). Copy it again, or re-create it (a model folder: "
                               "export it again)") from err
    if not isinstance(ckpt, dict):
        raise InputError(path, f"not a proxyseg {what} (a {type(ckpt).__name__}, not a dictionary)")
    return ckpt


def check_blackbox_checkpoint(path: str | os.PathLike) -> None:
    """Refuse a pyannote.audio checkpoint file that names a global beyond :data:`PYANNOTE_GLOBALS` /
    :data:`PYANNOTE_PREFIXES` (its library unpickles it in full, which would run such a global)."""
    import torch

    try:
        names = torch.serialization.get_unsafe_globals_in_checkpoint(path)
    except Exception as err:  # noqa: BLE001 (zip, pickle and OS errors of a damaged file)
        raise InputError(path, "cannot load it as a pyannote.audio segmentation model (damaged or not a "
                               f"PyTorch file: {err})") from err
    bad = sorted(n for n in names if n not in PYANNOTE_GLOBALS and not n.startswith(PYANNOTE_PREFIXES))
    if bad:
        raise InputError(path, "refused to load this checkpoint: it names " + ", ".join(bad[:5])
                         + (" ..." if len(bad) > 5 else "") + ", which a pyannote.audio model does not need "
                         "and which could run code when loaded. Use a checkpoint from a source you trust")
