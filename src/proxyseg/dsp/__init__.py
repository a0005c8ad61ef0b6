"""Plain signal processing below every stage: the STFT on WavLM's frame grid and its inverse
(:mod:`.stft`). Stages import it from here, never from one another."""

from proxyseg.dsp.stft import frame_layout, istft, stft, stft_frequencies

__all__ = ["frame_layout", "istft", "stft", "stft_frequencies"]
