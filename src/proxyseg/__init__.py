"""proxyseg: explainable NMF proxies for multilabel audio segmentation (Mariotte et al., ICASSP 2024)."""

__version__ = "0.1.0"
