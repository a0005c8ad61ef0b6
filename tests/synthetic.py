"""Synthetic data shared by the teacher and proxy tests."""

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
