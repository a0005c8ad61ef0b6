"""A black box's checkpoint from a file inside a registry wheel: ``teacher.checkpoint: pypi:REQ:MEMBER``.

Some pretrained weights reach machines without a model hub only inside a wheel on the package registry,
e.g. pyannote's speaker segmentation model as ``whisperx/assets/pytorch_model.bin`` in ``whisperx==3.8.6``.
Installing that wheel would pull its own dependencies; only the file is needed, so the workflow downloads
the wheel alone (``pip download --no-deps``), copies the member out and records where it came from
(``<out>.source.json``: requirement, wheel, sha256 of both). The file appears complete or not at all.
"""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from proxyseg.core.atomic import atomic_open, atomic_path
from proxyseg.core.errors import InputError
from proxyseg.core.provenance import file_sha256

log = logging.getLogger("proxyseg.teacher.fetch")

PREFIX = "pypi:"
#: a pinned requirement: name==version (PEP 508 names, a plain version)
REQUIREMENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*==[A-Za-z0-9.+!_-]+")


def parse(spec: str) -> tuple[str, str] | None:
    """``pypi:REQ:MEMBER`` -> ``(REQ, MEMBER)``; None for any other checkpoint (a path or a hub id)."""
    if not str(spec).startswith(PREFIX):
        return None
    body = str(spec)[len(PREFIX):]
    requirement, _, member = body.partition(":")
    if not REQUIREMENT.fullmatch(requirement) or not member or member.startswith("/") or ".." in member.split("/"):
        raise InputError(None, f"teacher.checkpoint {spec!r}: write pypi:NAME==VERSION:PATH/IN/WHEEL, e.g. "
                               "pypi:whisperx==3.8.6:whisperx/assets/pytorch_model.bin")
    return requirement, member



def fetch_wheel_file(requirement: str, member: str, out: str | os.PathLike) -> dict:
    """Download the wheel of ``requirement`` without its dependencies and write its file ``member`` to ``out``."""
    parse(f"{PREFIX}{requirement}:{member}")  # checks both before anything runs
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=".wheel-") as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:", "--dest", tmp,
               requirement]
        log.info("running: %s", " ".join(cmd))
        run = subprocess.run(cmd, capture_output=True, text=True)
        if run.returncode:
            tail = "\n".join((run.stdout + run.stderr).strip().splitlines()[-5:])
            raise InputError(None, f"pip could not download {requirement} (exit {run.returncode}); check the package "
                                   f"registry is reachable (or a mirror: PIP_INDEX_URL):\n{tail}")
        wheels = sorted(Path(tmp).glob("*.whl"))
        if len(wheels) != 1:
            raise InputError(None, f"pip download {requirement} gave {len(wheels)} wheels, expected one")
        wheel = wheels[0]
        with zipfile.ZipFile(wheel) as zf:
            if member not in zf.namelist():
                raise InputError(wheel.name, f"has no {member}; list its files with: unzip -l {wheel.name}")
            with atomic_path(out) as part, zf.open(member) as src, open(part, "wb") as dst:
                while block := src.read(1 << 20):
                    dst.write(block)
        record = {"requirement": requirement, "wheel": wheel.name, "wheel_sha256": file_sha256(wheel),
                  "member": member, "sha256": file_sha256(out), "bytes": out.stat().st_size}
    with atomic_open(out.parent / (out.name + ".source.json")) as f:
        json.dump(record, f, indent=2)
    log.info("%s from %s (%s): %d bytes, sha256 %s", member, record["wheel"], requirement, record["bytes"],
             record["sha256"])
    return record
