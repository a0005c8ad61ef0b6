"""Synthetic data and stand-in models shared by the tests."""

from pathlib import Path

import numpy as np


def class_activity(rng: np.random.Generator, n: int) -> np.ndarray:
    """(n, 4) int8 activity of the 4 classes in runs of 3-14 frames, each run on or off at random: short
    against a training crop, so each crop holds both states of a class (the per-crop instance norm keeps
    only the contrast within a crop)."""
    act = np.zeros((n, 4), dtype=np.int8)
    for c in range(4):
        t = 0
        while t < n:
            length = int(rng.integers(3, 15))
            act[t:t + length, c] = rng.integers(0, 2)
            t += length
    return act


def pyannote_standin(path: Path, powerset: bool = False, duration: float = 2.0) -> Path:
    """A tiny randomly initialised PyanNet saved the way pyannote.audio saves checkpoints (multilabel, or
    powerset with at most 2 speakers at once); needs the [pyannote] extra."""
    import lightning
    import torch
    import pyannote.audio
    from pyannote.audio.core.task import Problem, Resolution, Specifications
    from pyannote.audio.models.segmentation import PyanNet

    torch.manual_seed(0)
    model = PyanNet(sincnet={"stride": 10}, lstm={"hidden_size": 16, "num_layers": 1, "bidirectional": True,
                                                   "monolithic": True, "dropout": 0.0},
                    linear={"hidden_size": 16, "num_layers": 1})
    spec = Specifications(problem=Problem.MONO_LABEL_CLASSIFICATION if powerset else Problem.MULTI_LABEL_CLASSIFICATION,
                          resolution=Resolution.FRAME, duration=duration,
                          classes=["speaker#1", "speaker#2", "speaker#3"],
                          powerset_max_classes=2 if powerset else None, permutation_invariant=True)
    model.specifications = spec
    model.build()
    torch.save({"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams),
                "pytorch-lightning_version": lightning.__version__,
                "pyannote.audio": {"versions": {"pyannote.audio": pyannote.audio.__version__},
                                   "architecture": {"module": type(model).__module__, "class": type(model).__name__},
                                   "specifications": spec}}, path)
    return path
