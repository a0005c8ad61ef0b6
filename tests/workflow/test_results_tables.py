"""docs/results_tables.py fills docs/results.md's tables from run folders: the numbers on the page are the
runs' (no hand copies), each block names the commit it came from, and a stale page is caught by --check."""

from __future__ import annotations

import importlib.util
import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tables():
    spec = importlib.util.spec_from_file_location("results_tables", REPO / "docs" / "results_tables.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _tsv(path: Path, rows: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join("\t".join(r.split()) for r in rows) + "\n")


def _run(root: Path, seed: int, f1: float) -> Path:
    """A results folder inside a git checkout, with the three tables the page reads."""
    results = root / f"results-seed{seed}"
    _tsv(results / "tables" / "segmentation.tsv", [
        "system corpus class f1",
        f"teacher radio speech {f1}",
        "spec radio speech 0.80",
        "constant_output radio speech 0.58"])
    text = (results / "tables" / "segmentation.tsv").read_text().replace("constant_output", "constant output")
    (results / "tables" / "segmentation.tsv").write_text(text)
    _tsv(results / "tables" / "fidelity.tsv", [
        "system corpus class fidelity_f1 kappa teacher_positive_rate proxy_positive_rate minutes",
        "spec radio speech 0.9 0.75 0.4 0.42 2.0",
        "spec radio music 0.5 0.1 0.0 0.1 2.0",
        "spec radio:heldout speech 0.6 0.2 0.3 0.5 31.0",
        "spec music:heldout speech 0.0 0.0 0.0 0.05 40.0",
        "spec music:heldout overlap 0.0 0.0 0.0 0.0 40.0"])
    _tsv(results / "tables" / "faithfulness.tsv", [
        "system class removal segments logit_drop_50 verdict",
        "spec speech explanation 10 1.5 pass",
        "spec speech random_active 10 0.5 pass",
        "spec speech loudest 10 0.7 pass"])
    (results / "teacher").mkdir()
    (results / "teacher" / "train.json").write_text(f'{{"seed": {seed}}}')
    return results


@pytest.fixture
def checkout(tmp_path):
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (tmp_path / "README").write_text("x\n")
    git = ["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "add", "README"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "x"], check=True)
    commit = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    return tmp_path, commit


PAGE = """# Results
prose kept by hand
<!-- fill: stamp demo -->
old stamp
<!-- /fill -->
<!-- fill: segmentation demo -->
| old | table |
<!-- /fill -->
<!-- fill: fidelity demo -->
<!-- /fill -->
<!-- fill: agreement demo -->
<!-- /fill -->
<!-- fill: verdicts demo -->
<!-- /fill -->
<!-- fill: segmentation other -->
kept: no run named other
<!-- /fill -->
more prose
"""


def test_blocks_are_filled_from_the_runs_tables(tables, checkout):
    root, commit = checkout
    run = _run(root, 0, 0.931)
    page, left = tables.fill(PAGE, {"demo": run}, {}, machine="test machine")
    assert f"commit {commit};" in page and "test machine" in page and "old stamp" not in page
    assert "| old | table |" not in page and "93.1" in page and "80.0" in page
    assert "*constant output*" in page                     # the floor, marked as one
    fidelity = page.split("<!-- fill: fidelity demo -->")[1].split("<!-- /fill -->")[0]
    assert "90.0 / 0.75" in fidelity                       # fidelity: F1 / kappa on the scored class ...
    assert "50.0 / 0.10" not in fidelity                   # ... not on a class the corpus does not annotate
    assert "radio:heldout" in page and "31.0" in page and "50.0 / 60.0 / 0.20 / 60.0" in page   # held-back set
    assert re.search(r"\| 0\.0 +\| 5\.0 / 0\.0 / 0\.00 / 95\.0", page)      # the teacher never says speech; 5 % false alarms
    assert "| music:heldout | overlap" not in page          # nobody decides it: no row
    assert "loudest 0.70" in page and "| pass " in page
    assert "kept: no run named other" in page and left == ["line 15: segmentation other"]
    assert page.startswith("# Results\nprose kept by hand\n") and page.endswith("more prose\n")
    again, _ = tables.fill(page, {"demo": run}, {}, machine="test machine")
    assert again == page                                   # filling twice changes nothing


def test_local_changes_are_stamped(tables, checkout):
    root, commit = checkout
    run = _run(root, 0, 0.9)
    (root / "README").write_text("changed\n")
    page, _ = tables.fill("<!-- fill: stamp demo -->\n<!-- /fill -->\n", {"demo": run}, {}, machine="m")
    assert f"commit {commit} + local changes;" in page


def test_seeds_block_gives_mean_and_range(tables, checkout):
    root, _ = checkout
    runs = [_run(root, s, f1) for s, f1 in [(0, 0.90), (1, 0.92), (2, 0.94)]]
    page, _ = tables.fill("<!-- fill: seeds demo -->\n<!-- /fill -->\n", {}, {"demo": runs})
    assert "92.0 (90.0-94.0)" in page and "seeds 0,1,2" in page


def test_errors_name_the_line_or_the_file(tables, checkout):
    root, _ = checkout
    run = _run(root, 0, 0.9)
    with pytest.raises(tables.FillError, match="line 2: unknown block 'sgmentation'"):
        tables.fill("x\n<!-- fill: sgmentation demo -->\n<!-- /fill -->\n", {"demo": run}, {})
    (run / "tables" / "fidelity.tsv").unlink()
    with pytest.raises(tables.FillError, match="fidelity.tsv: missing"):
        tables.fill("<!-- fill: fidelity demo -->\n<!-- /fill -->\n", {"demo": run}, {})


def test_a_run_outside_a_checkout_is_refused(tables, tmp_path):
    run = _run(tmp_path, 0, 0.9)     # tmp_path is not a git checkout
    with pytest.raises(tables.FillError, match="not inside a git checkout"):
        tables.stamp(run, None)


def test_check_fails_on_a_stale_page_and_passes_once_filled(tables, checkout, tmp_path_factory):
    root, _ = checkout
    run = _run(root, 0, 0.9)
    page = tmp_path_factory.mktemp("page") / "results.md"
    page.write_text(PAGE)
    args = ["--page", str(page), "--run", f"demo={run}", "--machine", "m"]
    assert tables.main([*args, "--check"]) == 1 and page.read_text() == PAGE
    assert tables.main(args) == 0
    assert tables.main([*args, "--check"]) == 0
    assert tables.main(["--page", str(page), "--run", "demo"]) == 2    # NAME=PATH expected


def test_the_committed_page_has_only_known_blocks(tables):
    page = (REPO / "docs" / "results.md").read_text()
    filled, left = tables.fill(page, {}, {})
    assert filled == page
    assert len(left) == page.count("<!-- fill: ")
