"""A plain folder of audio without labels: every class unknown, to distil a proxy from the teacher on unlabelled audio.

No RTTM and no UEM are read: harmonise writes an empty reference, whole files as scored regions and targets
that are unknown (-1) on every frame, so only the teacher's outputs can supervise such a split. Keys that
would give labels are refused rather than ignored: a user who sets them expects them to count.
"""

from __future__ import annotations

from proxyseg.corpora.adapters.common import (SplitSource, check_template, corpus_error, is_template, need_root,
                                              path_in, select_portion, split_root, uris_from)

LABELS = "classes"  # none are annotated; "classes" with an empty label map reads no RTTM name field
DESCRIPTION = "a folder of audio without labels (every class unknown), to distil from the teacher on unlabelled audio"
LAYOUT_HINT = "the folder of the recordings"

DEFAULT_AUDIO = "{uri}.wav"
#: config keys that give labels or scored regions; a folder corpus has none
LABEL_KEYS = ("rttm", "uem", "labels", "label_map", "annotated", "domains")


def resolve(corpus, split, spec) -> SplitSource:
    """The split's URIs: its `list` file, else every file matching the `audio` template; `portion` keeps a part."""
    split_spec = spec["splits"][split] or {}
    for key in LABEL_KEYS:  # schema defaults (label_map {}, uem/domains null) are empty, hence not refused
        for where, entry in ((None, spec), (split, split_spec)):
            if entry.get(key):
                raise corpus_error(corpus, where, f"`{key}` is given, but a folder corpus has no labels (every class "
                                                  "is unknown); remove it, or use the generic adapter for labelled "
                                                  "audio")
    base = need_root(corpus, split, "folder", split_root(spec, split_spec), LAYOUT_HINT)
    audio = check_template(corpus, split, "audio", spec.get("audio") or DEFAULT_AUDIO).replace("{split}", split)
    if not is_template(audio) or "{partition}" in audio:
        raise corpus_error(corpus, split, f"`audio` {audio!r} must contain {{uri}} (and may use {{split}})")
    uris, origin, inputs = uris_from(corpus, split, base, split_spec, None, None, audio)
    uris = select_portion(corpus, split, uris, None, split_spec.get("portion"))
    return SplitSource(
        corpus=corpus, split=split, adapter="folder", labels=LABELS, label_map={}, annotated=set(), uris=uris,
        audio={u: path_in(base, audio.format(uri=u)) for u in uris}, rttm=[], uem=None, origin=origin,
        inputs=inputs)
