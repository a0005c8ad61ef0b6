"""Write-then-rename: no temporary file outlives a failed, killed or cancelled job."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from proxyseg.core.atomic import atomic_dir, atomic_open, atomic_path
from proxyseg.core.errors import InputError


def _stale(folder, name):
    """Temporaries a ``kill -9`` left behind: one of ``atomic_path`` (file) and one of ``atomic_dir``."""
    (folder / f".{name}.tmp-999999").write_text("partial")
    (folder / f".{name}.tmp-ab_12cd").mkdir()
    (folder / f".{name}.tmp-ab_12cd" / "half.bin").write_bytes(b"x")


def test_writing_an_output_removes_its_stale_temporaries(tmp_path):
    _stale(tmp_path, "out.h5")
    unrelated = [tmp_path / ".other.h5.tmp-999999", tmp_path / ".out.h5.tmp-7.tmp-1", tmp_path / "out.h5.bak"]
    for path in unrelated:  # another output's temporaries (even one named out.h5.tmp-7) are not touched
        path.write_text("keep")
    with atomic_open(tmp_path / "out.h5") as f:
        f.write("done")
    assert (tmp_path / "out.h5").read_text() == "done"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["out.h5", *(p.name for p in unrelated)])


def test_building_a_folder_removes_its_stale_temporaries(tmp_path):
    _stale(tmp_path, "model")
    with atomic_dir(tmp_path / "model") as tmp:
        (tmp / "a.txt").write_text("a")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


@pytest.mark.parametrize("kind", ["file", "dir"])
def test_failure_removes_the_temporary(tmp_path, kind):
    with pytest.raises(RuntimeError):
        with atomic_path(tmp_path / "out") as tmp:
            if kind == "dir":
                tmp.mkdir()
                (tmp / "x").write_text("x")
            else:
                tmp.write_text("x")
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_sigterm_runs_the_cleanup(tmp_path):
    """Slurm and Snakemake cancel a job with SIGTERM: ``proxyseg`` exits with status 143 and leaves no
    temporary file (the default action would kill it on the spot, leaving ``.out.h5.tmp-<pid>``)."""
    script = textwrap.dedent("""
        import argparse, sys, time
        from proxyseg import cli
        from proxyseg.core.atomic import atomic_path

        def stage(args):
            with atomic_path(sys.argv[1]) as tmp:
                tmp.write_bytes(b"partial")
                print("writing", flush=True)
                time.sleep(60)

        def build_parser():
            parser = argparse.ArgumentParser()
            parser.set_defaults(func=stage, verbose=False, threads=0)
            return parser

        cli.build_parser = build_parser
        sys.exit(cli.main([]))
    """)
    out = tmp_path / "out.h5"
    proc = subprocess.Popen([sys.executable, "-c", script, str(out)], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        assert proc.stdout.readline().strip() == "writing"
        assert (tmp_path / f".out.h5.tmp-{proc.pid}").is_file()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 143
    finally:
        proc.kill()
        proc.wait()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("make", [atomic_dir, atomic_path], ids=["atomic_dir", "atomic_path"])
@pytest.mark.parametrize("name", ["out/..", ".", "{cwd}", "out/link/.."])
def test_replacing_an_output_never_deletes_more_than_that_output(tmp_path, monkeypatch, make, name):
    """A proxy named '..' was exported to export/.., and the old export/.. (the results folder) deleted.
    Only paths inside tmp_path here: without the check these would delete tmp_path's work folder."""
    work = tmp_path / "work"
    (work / "out").mkdir(parents=True)
    (work / "out" / "keep.txt").write_text("keep")
    (work / "out" / "link").symlink_to(work / "out")
    monkeypatch.chdir(work)
    with pytest.raises(InputError, match="refusing to replace this output"):
        with make(name.format(cwd=work)):
            pass
    assert (work / "out" / "keep.txt").read_text() == "keep"


@pytest.mark.parametrize("name, why", [
    ("/", "is not an output's"),
    ("/usr", "the working directory or one of its parents"),
    ("{cwd}", "the working directory or one of its parents"),
    ("{cwd}/..", "is not an output's"),
    ("{home}", "the home folder"),
    ("{cwd}/results/x/..", "is not an output's"),
])
def test_paths_that_are_not_one_output_are_refused_before_anything_is_deleted(tmp_path, monkeypatch, name, why):
    """check_removable alone (never atomic_dir on these paths: a test run without the check would delete them)."""
    from proxyseg.core.atomic import check_removable

    cwd = Path("/usr/share") if name == "/usr" else tmp_path / "work"
    cwd.mkdir(exist_ok=True)
    monkeypatch.chdir(cwd)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    with pytest.raises(InputError, match="refusing to replace this output") as error:
        check_removable(name.format(cwd=cwd, home=tmp_path / "home"))
    assert why in str(error.value)
    check_removable(tmp_path / "work" / "results" / "export" / "spec_fixedW")  # an ordinary output


def test_an_output_that_holds_its_own_parent_is_not_deleted(tmp_path, monkeypatch):
    (tmp_path / "results" / "export").mkdir(parents=True)
    (tmp_path / "results" / "scores.tsv").write_text("keep")
    (tmp_path / "results" / "export" / "up").symlink_to(tmp_path / "results")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InputError, match="holds the folder the output is written in"):
        with atomic_dir("results/export/up"):  # a link to results: what it names is what would go
            pass
    assert (tmp_path / "results" / "scores.tsv").read_text() == "keep"


@pytest.mark.parametrize("mask, folder, file", [(0o022, 0o755, 0o644), (0o077, 0o700, 0o600), (0o002, 0o775, 0o664)])
def test_outputs_honour_the_umask(tmp_path, mask, folder, file):
    """A model folder or demo corpus made under umask 022 can be opened by colleagues on a shared cluster."""
    old = os.umask(mask)
    try:
        with atomic_dir(tmp_path / "model") as tmp:
            (tmp / "settings.json").write_text("{}")
        with atomic_dir(tmp_path / "model") as tmp:  # replacing an existing folder too
            (tmp / "settings.json").write_text("{}")
        with atomic_open(tmp_path / "table.tsv") as f:
            f.write("x")
    finally:
        os.umask(old)
    assert (tmp_path / "model").stat().st_mode & 0o777 == folder
    assert (tmp_path / "model" / "settings.json").stat().st_mode & 0o777 == file
    assert (tmp_path / "table.tsv").stat().st_mode & 0o777 == file
