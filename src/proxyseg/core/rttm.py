"""Strict RTTM and UEM reading: every malformed line is reported with its file and line number."""

from __future__ import annotations

import codecs
import io
import math
import os
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from proxyseg.core.errors import InputError


@dataclass(frozen=True)
class Segment:
    uri: str
    start: float
    end: float
    label: str
    line: int = 0  # line in the source file, for error messages


def _number(text: str, path, lineno: int, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise InputError(path, f"{what} {text!r} is not a number", line=lineno) from None
    if not math.isfinite(value):
        raise InputError(path, f"{what} {text!r} is not finite", line=lineno)
    return value


def read_text(path: str | os.PathLike, what: str = "file") -> str:
    """The text of a UTF-8 file (a leading byte-order mark dropped).

    Any other encoding is an InputError naming the line of the first bad byte, not a UnicodeDecodeError
    traceback that names no file.
    """
    data = Path(path).read_bytes().removeprefix(codecs.BOM_UTF8)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise InputError(path, f"{what}: byte 0x{data[exc.start]:02x} is not UTF-8 (Latin-1 or another "
                               "encoding?); save it as UTF-8", line=line) from None


def text_lines(path: str | os.PathLike, what: str = "file") -> list[tuple[int, str]]:
    """(line number, line) of a UTF-8 text file, lines ending in \\n, \\r\\n or \\r, as ``open`` splits them."""
    return list(enumerate(io.StringIO(read_text(path, what), newline=None), start=1))


def read_rttm(path: str | os.PathLike) -> dict[str, list[Segment]]:
    """Segments of every ``SPEAKER`` line, grouped by URI.

    RTTM lines have 10 space-separated fields: ``SPEAKER uri channel onset duration <NA> <NA> name <NA> <NA>``.
    Other line types (``SPKR-INFO``, ...) are skipped; blank lines and ``;;`` comments too.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "RTTM file not found; check the corpus paths in config")
    out: dict[str, list[Segment]] = defaultdict(list)
    for lineno, raw in text_lines(path, "RTTM"):
        line = raw.strip()
        if not line or line.startswith(";;"):
            continue
        fields = line.split()
        if fields[0] != "SPEAKER":
            continue
        if len(fields) != 10:
            raise InputError(
                path,
                f"RTTM line has {len(fields)} fields, expected 10 "
                "(SPEAKER uri channel onset duration <NA> <NA> name <NA> <NA>)",
                line=lineno,
            )
        onset = _number(fields[3], path, lineno, "onset")
        duration = _number(fields[4], path, lineno, "duration")
        if onset < 0:
            raise InputError(path, f"negative onset {onset}", line=lineno)
        if duration < 0:
            raise InputError(path, f"negative duration {duration}", line=lineno)
        out[fields[1]].append(Segment(fields[1], onset, onset + duration, fields[7], lineno))
    return dict(out)


def write_rttm(segments: Iterable[Segment], handle) -> None:
    for s in segments:
        handle.write(f"SPEAKER {s.uri} 1 {s.start:.4f} {s.end - s.start:.4f} <NA> <NA> {s.label} <NA> <NA>\n")


def read_uem(path: str | os.PathLike) -> dict[str, list[tuple[float, float]]]:
    """Scored regions per URI from a UEM file (``uri channel start end`` per line)."""
    return {uri: [(start, end) for start, end, _ in spans] for uri, spans in read_uem_lines(path).items()}


def read_uem_lines(path: str | os.PathLike) -> dict[str, list[tuple[float, float, int]]]:
    """As :func:`read_uem`, each region with its line, for errors found once the audio is known."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "UEM file not found; check the corpus paths in config")
    out: dict[str, list[tuple[float, float, int]]] = defaultdict(list)
    for lineno, raw in text_lines(path, "UEM"):
        line = raw.strip()
        if not line or line.startswith(";;"):
            continue
        fields = line.split()
        if len(fields) != 4:
            raise InputError(path, f"UEM line has {len(fields)} fields, expected 4 (uri channel start end)",
                             line=lineno)
        start = _number(fields[2], path, lineno, "start")
        end = _number(fields[3], path, lineno, "end")
        if start < 0 or end < start:
            raise InputError(path, f"bad region [{start}, {end}]: need 0 <= start <= end", line=lineno)
        out[fields[0]].append((start, end, lineno))
    return dict(out)


def write_uem(regions: dict[str, list[tuple[float, float]]], handle) -> None:
    for uri, spans in regions.items():
        for start, end in spans:
            handle.write(f"{uri} 1 {start:.3f} {end:.3f}\n")


def read_list(path: str | os.PathLike) -> list[str]:
    """URIs of a list file, one per line (blank lines and ``#`` comments ignored)."""
    return list(read_list_lines(path))


def read_list_lines(path: str | os.PathLike) -> dict[str, int]:
    """URI -> its line in a list file, in listed order."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "list file not found; check the corpus paths in config")
    uris: dict[str, int] = {}
    for lineno, raw in text_lines(path, "list file"):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if len(line.split()) != 1:
            raise InputError(path, f"expected one URI per line, got {line!r}", line=lineno)
        if line in uris:
            raise InputError(path, f"URI {line!r} is listed on lines {uris[line]} and {lineno}; each file must "
                                   "appear once", line=lineno)
        uris[line] = lineno
    return uris
