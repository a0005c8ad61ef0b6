"""Real recordings from Debian packages, fetched for use as unlabelled audio corpora (never committed here).

Some Debian packages ship recordings under free licences: ``asterisk-core-sounds-en-wav`` (Allison Smith's
English telephone prompts, 8 kHz WAV under ``usr/share/asterisk/sounds/en_US_f_Allison/``, CC BY-SA 3.0),
``colobot-common-sounds`` (game music, 44.1 kHz stereo OGG under ``usr/share/games/colobot/music/``, GPL-3+).
The Debian archive keeps them at fixed versions with checksums, so a fetch can be repeated and checked, and
``apt-get download`` plus ``dpkg -x`` get them without installing anything.

:func:`fetch_package` downloads one package into a temporary folder beside the output, extracts it, records
where it came from (``SOURCE.json``: version, sha256 of the .deb, the ``License:`` fields of its copyright file)
and renames the tree into place (:func:`proxyseg.core.atomic.atomic_dir`), so a folder that exists is a
complete fetch; a killed fetch leaves hidden temporaries that the next one removes. The .deb is not kept.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shlex
import shutil
import subprocess
import tempfile
from pathlib import Path

from proxyseg.core.atomic import atomic_dir
from proxyseg.core.errors import InputError
from proxyseg.core.provenance import file_sha256

log = logging.getLogger("proxyseg.corpora.debian")

#: Debian policy 5.6.1: lowercase letters, digits, + - . ; at least two characters, starting alphanumeric
PACKAGE_NAME = re.compile(r"[a-z0-9][a-z0-9+.-]+")
#: Debian policy 5.6.12: [epoch:]upstream[-revision], the upstream part starting with a digit
VERSION = re.compile(r"(?:[0-9]+:)?[0-9][A-Za-z0-9.+~-]*")
SOURCE_FILE = "SOURCE.json"
_TAIL_LINES = 5   # lines of a failed command's output quoted in the error


def _check_name(package: str, version: str | None) -> None:
    if not isinstance(package, str) or not PACKAGE_NAME.fullmatch(package):
        raise InputError(None, f"not a Debian package name: {package!r} (lowercase letters, digits, '+', '-' "
                               f"and '.'; at least 2 characters, starting with a letter or digit)")
    if version is not None and (not isinstance(version, str) or not VERSION.fullmatch(version)):
        raise InputError(None, f"not a Debian version: {version!r} (e.g. 1.6.1-1 or 1:2.0-3)")


def _is_fetch(path: Path) -> bool:
    """Whether ``path`` is a folder written by :func:`fetch_package` (a complete one: SOURCE.json is in it)."""
    try:
        record = json.loads((path / SOURCE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(record, dict) and {"package", "sha256"} <= record.keys()


def _tail(run: subprocess.CompletedProcess | subprocess.CalledProcessError) -> str:
    """The last lines the command wrote (stderr, else stdout), joined with ' | '."""
    text = (run.stderr or "").strip() or (run.stdout or "").strip()
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return " | ".join(lines[-_TAIL_LINES:]) or "(no output)"


def _run(cmd: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess:
    log.info("running: %s%s", shlex.join(cmd), f" (in {cwd})" if cwd else "")
    return subprocess.run(cmd, cwd=cwd, check=True, capture_output=True, text=True)



def licence_fields(tree: Path, package: str) -> list[str]:
    """The values of the ``License:`` fields of ``usr/share/doc/<package>/copyright`` in ``tree``, each once, in
    order of appearance; [] (with a warning) when the file is absent or lies outside the tree (a symlinked doc
    folder points into another package)."""
    path = tree / "usr" / "share" / "doc" / package / "copyright"
    resolved = path.resolve()
    if not resolved.is_file() or not resolved.is_relative_to(tree.resolve()):
        log.warning("%s: no copyright file in the package; SOURCE.json records no licence", package)
        return []
    found = []
    for line in resolved.read_text(encoding="utf-8", errors="replace").splitlines():
        m = re.match(r"License:[ \t]*(\S.*?)\s*$", line)  # fields only: continuation lines start with a space
        if m and m.group(1) not in found:
            found.append(m.group(1))
    return found


def fetch_package(package: str, out_dir: str | os.PathLike, version: str | None = None) -> dict:
    """Download the Debian package ``package`` (``version``, or the candidate apt would install), extract it into
    ``out_dir`` with ``SOURCE.json`` beside the tree, and return that record. ``out_dir`` must not exist, or be an
    earlier complete fetch (it is replaced). Needs ``apt-get`` (root, or an apt cache it may write) and ``dpkg``."""
    _check_name(package, version)
    out_dir = Path(out_dir)
    apt_get = shutil.which("apt-get")
    if apt_get is None:
        raise InputError(None, f"apt-get not found: this step needs a Debian/Ubuntu machine; or extract the package "
                               f"{package} yourself into {out_dir}")
    dpkg, dpkg_deb = shutil.which("dpkg"), shutil.which("dpkg-deb")
    if dpkg is None or dpkg_deb is None:
        raise InputError(None, f"dpkg not found (dpkg and dpkg-deb are needed to extract {package}): this step "
                               f"needs a Debian/Ubuntu machine; or extract the package yourself into {out_dir}")
    if out_dir.is_symlink() or (out_dir.exists() and not _is_fetch(out_dir)):
        raise InputError(out_dir, f"exists and is not an earlier fetch (a folder with {SOURCE_FILE}); it is left "
                                  f"as it is: remove it or choose another folder")

    spec = package if version is None else f"{package}={version}"
    fetched_with = shlex.join(["apt-get", "download", spec])
    with atomic_dir(out_dir) as tree:
        # the download folder has the temporaries' name too: a killed run's is removed by the next one
        with tempfile.TemporaryDirectory(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent) as download:
            download = Path(download)
            try:
                _run([apt_get, "download", spec], cwd=download)
            except subprocess.CalledProcessError as e:
                raise InputError(None, f"apt-get download {spec} failed (exit {e.returncode}): {_tail(e)}. Check "
                                       f"the network (the package registry must be reachable), the apt sources "
                                       f"(`apt-get update` as root) and the package name {package!r}") from None
            debs = sorted(download.glob("*.deb"))
            if len(debs) != 1:
                raise InputError(None, f"apt-get download {spec} left {len(debs)} .deb files "
                                       f"({', '.join(d.name for d in debs) or 'none'}), expected one")
            deb = debs[0]
            try:
                fields = _run([dpkg_deb, "--field", str(deb), "Package", "Version"]).stdout
                _run([dpkg, "-x", str(deb), str(tree)])
            except subprocess.CalledProcessError as e:
                raise InputError(deb, f"not a readable .deb ({shlex.join(e.cmd)} failed with exit {e.returncode}: "
                                      f"{_tail(e)})") from None
            control = dict(re.findall(r"^(Package|Version):\s*(\S+)\s*$", fields, flags=re.M))
            if control.get("Package") != package or (version is not None and control.get("Version") != version):
                raise InputError(deb, f"the downloaded .deb is {control.get('Package')} {control.get('Version')}, "
                                      f"not the {spec} asked for")
            record = {"package": package, "version": control["Version"], "deb": deb.name, "sha256": file_sha256(deb),
                      "licence": licence_fields(tree, package), "fetched_with": fetched_with}
        (tree / SOURCE_FILE).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    log.info("%s %s extracted into %s (licence: %s)", package, record["version"], out_dir,
             ", ".join(record["licence"]) or "none found")
    return record
