"""Any folder of audio with RTTM: speaker turns or class labels (``labels:`` in config), optional UEM and lists.

The former adapter names ``class_rttm`` and ``speaker_rttm`` (:data:`ALIASES`) are this layout with
``labels`` fixed.
"""

from __future__ import annotations

from proxyseg.corpora.adapters.common import CLASS_NAMES, LABEL_KINDS, SplitSource, corpus_error, files_layout

LABELS = None  # chosen in config
DESCRIPTION = ("any folder of audio with RTTM (speaker turns or class labels, `labels:` in config), "
               "optional UEM and list files")
LAYOUT_HINT = "the corpus folder that the relative audio/list/rttm/uem paths of this corpus start from"

#: former adapter names, kept so existing configs work: both are the generic layout
ALIASES = {"class_rttm": "classes", "speaker_rttm": "speakers"}


def resolve(corpus, split, spec) -> SplitSource:
    adapter = spec["adapter"]
    labels = ALIASES.get(adapter) or spec.get("labels")
    if labels not in LABEL_KINDS:
        raise corpus_error(corpus, None, "the generic adapter needs `labels`: `speakers` (RTTM name field = speaker, "
                                         "speech and overlap derived) or `classes` (name field = class, see label_map)")
    identity = {c: c for c in CLASS_NAMES} if labels == "classes" else {}
    return files_layout(corpus, split, spec, "generic", LAYOUT_HINT, labels, identity, {})
