"""proxyseg: explainable NMF proxies for multilabel audio segmentation (Mariotte et al., ICASSP 2024)."""

from proxyseg.core.numerics import pin_kernels as _pin_kernels

_pin_kernels()  # before numpy or torch load their math libraries (proxyseg.core.numerics)

__version__ = "0.1.0"
