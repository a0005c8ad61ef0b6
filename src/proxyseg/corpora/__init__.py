"""Stage `corpora`: corpus layouts (adapters), the demo and mixed corpora, label harmonisation.

Kept light: the Snakefile imports :mod:`.adapters` at parse time."""
