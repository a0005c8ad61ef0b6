"""benchmarks/demo_profile.py's critical path: traced backwards from the last job, it ends, also where jobs
last 0 s in the log's whole seconds (a job that ends when it starts is "before" itself)."""

import importlib.util
from datetime import datetime, timedelta
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[2]


def _profile():
    spec = importlib.util.spec_from_file_location("demo_profile", REPO / "benchmarks" / "demo_profile.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_critical_path_ends_with_zero_second_jobs():
    t = datetime(2026, 12, 7, 12, 0, 0)
    s = timedelta(seconds=1)
    jobs = pd.DataFrame([
        {"jobid": 3, "rule": "gather", "wildcards": "", "start": t + 10 * s, "end": t + 10 * s},  # 0 s, listed
        {"jobid": 4, "rule": "index", "wildcards": "", "start": t + 10 * s, "end": t + 10 * s},   # first
        {"jobid": 1, "rule": "corpus", "wildcards": "", "start": t, "end": t + 10 * s},
        {"jobid": 2, "rule": "side", "wildcards": "", "start": t, "end": t + 3 * s},
        {"jobid": 5, "rule": "train", "wildcards": "", "start": t + 10 * s, "end": t + 40 * s},
    ])
    path = [step["rule"] for step in _profile().critical_path(jobs)]
    assert path[-1] == "train" and path[0] == "corpus"
    assert len(path) == len(set(path)) and "side" not in path
