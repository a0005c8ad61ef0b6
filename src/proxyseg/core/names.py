"""Names that come from a config (corpora, splits, proxies, mixes) become folder and file names and
Snakemake wildcards, so they are checked where they enter: the schema's ``$defs/name`` is this pattern
(tests/core/test_configcheck.py checks they are the same). It rules out ``..``, ``/``, spaces and a
leading dot or dash (a hidden file, an option)."""

from __future__ import annotations

import re

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}$"
NAME_RULE = ("a name is 1 to 64 letters, digits and _ . + -, starting with a letter or digit "
             "- it becomes a folder name")
_NAME = re.compile(NAME_PATTERN)


def is_name(value: object) -> bool:
    return isinstance(value, str) and _NAME.match(value) is not None
