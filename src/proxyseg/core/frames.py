"""The one frame grid every stage shares: WavLM's (16 kHz, hop 320 samples = 20 ms, window 400 = 25 ms).

Labels, features, teacher logits and proxy activations all live on this grid, so frame ``i`` of any
artifact covers samples ``[320 i, 320 i + 400)`` and is labelled by what is active at its centre.
"""

from __future__ import annotations

import numpy as np

SAMPLE_RATE = 16000
HOP = 320
WIN = 400
FRAME_RATE = SAMPLE_RATE // HOP  # 50 frames per second

#: Class order of the paper's code (sp, no, mu, ov); every (T, 4) array uses it.
CLASSES = ("speech", "noise", "music", "overlap")
CLASS_INDEX = {name: i for i, name in enumerate(CLASSES)}

#: Value of a frame target whose class the corpus does not annotate, or which lies outside the UEM.
UNKNOWN = -1


def num_frames(num_samples: int) -> int:
    """Number of WavLM frames for ``num_samples`` samples at 16 kHz (its CNN front end's formula)."""
    if num_samples < WIN:
        return 0
    return (num_samples - WIN) // HOP + 1


def frame_centers(n: int) -> np.ndarray:
    """Centre time in seconds of each of ``n`` frames."""
    return (np.arange(n) * HOP + WIN / 2) / SAMPLE_RATE
