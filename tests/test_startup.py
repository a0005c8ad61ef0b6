"""Light commands start light: the many small jobs of a run (deciding, scoring, tables) do not import torch,
which costs about 1.7 s of CPU per process (issue "A demo in 8 minutes")."""

import subprocess
import sys


def test_scoring_and_decisions_do_not_import_torch():
    code = ("import sys; import proxyseg.cli, proxyseg.evaluate.scoring, proxyseg.evaluate.fidelity, "
            "proxyseg.core.tables, proxyseg.teacher.blackbox; print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
