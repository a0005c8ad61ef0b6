"""Write-then-rename helpers: a killed job never leaves a file that looks complete.

An output is written under a hidden temporary name beside it (``.NAME.tmp-<pid>``, or ``.NAME.tmp-XXXXXXXX``
for a folder) and renamed onto ``NAME`` when the block succeeds. On an exception, ``KeyboardInterrupt`` or
SIGTERM (``proxyseg`` turns it into ``SystemExit(143)``, :func:`proxyseg.cli.main`) the temporary is
removed. A ``kill -9`` leaves it behind: the next job that writes ``NAME`` removes it first.

That assumes one job writes one output at a time, as under Snakemake (which never runs two jobs with the
same output): a second writer of the same ``NAME`` at the same time would lose its temporary.

Replacing an output deletes the old one, so :func:`check_removable` first makes sure it is only that
output (a name like ``..`` would otherwise delete the folder holding it). Outputs get the permissions
the user's umask gives (``mkdtemp`` alone makes 0700 folders that colleagues cannot open).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

from proxyseg.core.errors import InputError


def _tmp_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def umask() -> int:
    """The process's umask (``os.umask`` can only be read by setting it: set it back at once)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _home() -> Path | None:
    try:
        return Path.home().resolve()
    except (KeyError, RuntimeError):  # no HOME and no password entry
        return None


def check_removable(path: str | os.PathLike) -> None:
    """Raise :class:`InputError` unless deleting ``path`` deletes that output alone: never the working
    directory or one of its parents, the file-system root, the home folder, or a folder that holds the
    output's own parent folder (``export/..``)."""
    path = Path(path)
    target = path.resolve()
    cwd = Path.cwd().resolve()
    parent = path.parent.resolve()
    why = None
    if path.name in ("", ".", ".."):
        why = f"its name {path.name or str(path)!r} is not an output's"
    elif target == Path(target.anchor):
        why = "it is the file-system root"
    elif target == cwd or target in cwd.parents:
        why = "it is the working directory or one of its parents"
    elif target == _home():
        why = "it is the home folder"
    elif target == parent or target in parent.parents:
        why = "it holds the folder the output is written in"
    if why:
        raise InputError(path, f"refusing to replace this output: deleting it would delete more than one "
                               f"output ({why}). Choose another output path (a plain name below the results "
                               "folder)")


def remove_stale_temporaries(path: Path) -> None:
    """Remove what killed writers of ``path`` left: ``.NAME.tmp-<pid or mkdtemp suffix>`` beside it (only
    those of this very output: ``.NAME.tmp-1.tmp-2``, the temporary of ``NAME.tmp-1``, stays)."""
    prefix = f".{path.name}.tmp-"
    stale = re.compile(re.escape(prefix) + r"\w+")
    with contextlib.suppress(FileNotFoundError), os.scandir(path.parent) as entries:
        for entry in entries:  # scandir and startswith first: cheap in a folder of many outputs
            if entry.name.startswith(prefix) and stale.fullmatch(entry.name):
                _remove(Path(entry.path))


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds."""
    path = Path(path)
    check_removable(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    tmp = _tmp_name(path)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        _remove(tmp)
        raise


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", **kwargs) -> Iterator:
    """``open`` that writes to a temporary file and renames it into place when the block succeeds."""
    with atomic_path(path) as tmp:
        with open(tmp, mode, **kwargs) as handle:
            yield handle


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Build a directory under a temporary name; replace ``path`` with it when the block succeeds (mode
    0777 less the umask, like ``mkdir``: ``mkdtemp`` alone gives 0700)."""
    path = Path(path)
    check_removable(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
    try:
        os.chmod(tmp, 0o777 & ~umask())
        yield tmp
        if path.exists() or path.is_symlink():
            check_removable(path)  # again: the name may have become a link since
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
