"""The teacher: learned fusion of cached WavLM states + Conv-TasNet TCN (METHOD section 3).

Every submodule is imported lazily so that ``import proxyseg.teacher`` (and ``proxyseg.teacher.dumpfile``,
which scoring reads) does not import torch.
"""

from __future__ import annotations

__all__ = ["LayerFusion", "Teacher", "load_teacher", "train_teacher", "masked_bce",
           "dump_teacher"]


def __getattr__(name):
    if name in ("LayerFusion", "Teacher", "load_teacher"):
        from proxyseg.teacher import model
        return getattr(model, name)
    if name in ("train_teacher", "masked_bce"):
        from proxyseg.teacher import train
        return getattr(train, name)
    if name == "dump_teacher":
        from proxyseg.teacher.dump import dump_teacher
        return dump_teacher
    raise AttributeError(name)
