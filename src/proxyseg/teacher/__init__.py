"""The teacher: learned fusion of cached WavLM states + Conv-TasNet TCN (METHOD section 3).

Heavy submodules (training, dumping) are imported lazily so that ``import proxyseg.teacher`` stays cheap.
"""

from __future__ import annotations

from proxyseg.teacher.model import LayerFusion, Teacher, load_teacher, resolve_device

__all__ = ["LayerFusion", "Teacher", "load_teacher", "resolve_device", "train_teacher", "masked_bce",
           "dump_teacher"]


def __getattr__(name):
    if name in ("train_teacher", "masked_bce"):
        from proxyseg.teacher import train
        return getattr(train, name)
    if name == "dump_teacher":
        from proxyseg.teacher.dump import dump_teacher
        return dump_teacher
    raise AttributeError(name)
