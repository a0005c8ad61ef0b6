"""Write-then-rename: no temporary file outlives a failed, killed or cancelled job."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest

from proxyseg.core.atomic import atomic_dir, atomic_open, atomic_path


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
