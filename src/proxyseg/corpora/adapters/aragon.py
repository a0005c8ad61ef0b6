"""AragonRadio: audio, one RTTM per split with the class in the name field (sp, mu, no), a list file per split.

Overlapped speech is not annotated, so it is unknown in the targets (see harmonise).
"""

from __future__ import annotations

from proxyseg.corpora.adapters.common import SplitSource, files_layout

LABELS = "classes"
DESCRIPTION = ("AragonRadio: audio, RTTM with the class in the name field (sp, mu, no), list files per split; "
               "overlapped speech not annotated")
LAYOUT_HINT = ("the AragonRadio folder holding audio/<uri>.wav, rttm/<split>.rttm (name field sp/mu/no) and "
               "lists/<split>.lst (or set audio/list/rttm of the corpus and its splits)")

ARAGON_LABEL_MAP = {"sp": "speech", "mu": "music", "no": "noise"}
ARAGON_DEFAULTS = {"audio": "audio/{uri}.wav", "list": "lists/{split}.lst", "rttm": "rttm/{split}.rttm"}


def resolve(corpus, split, spec) -> SplitSource:
    return files_layout(corpus, split, spec, "aragon", LAYOUT_HINT, "classes", ARAGON_LABEL_MAP, ARAGON_DEFAULTS,
                        root_required=True)
