"""The explainable proxy (METHOD §5): an NMF-activation embedding distilled from the teacher."""
