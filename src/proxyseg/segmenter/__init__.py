"""Applying a trained proxy to new recordings: a self-contained model folder (``export``), streaming
inference with bounded memory (``stream``, ``run``) and the static HTML explanation report (``report``)."""
