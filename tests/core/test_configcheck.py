"""An invalid config is reported in a few lines: each key path, what is wrong, the nearest valid keys; no schema."""

import copy
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from proxyseg.core.configcheck import ConfigError, check_config

REPO = Path(__file__).resolve().parents[2]
SCHEMA = REPO / "workflow/schemas/config.schema.yaml"
DEMO = yaml.safe_load((REPO / "config.yaml").read_text())
SCHEMA_TEXT = ['"properties"', "'properties'", '"type": "object"', "'type': 'object'", "Failed validating",
               "description", "additionalProperties"]


def flat(text: str) -> str:
    return " ".join(text.split())  # long lines of the message are wrapped


def problem(edit, **kwargs) -> str:
    """The message of the error that the demo config changed by ``edit`` raises (lines wrapped)."""
    config = copy.deepcopy(DEMO)
    edit(config)
    with pytest.raises(ConfigError) as error:
        check_config(config, SCHEMA, **kwargs)
    message = str(error.value)
    assert not any(text in message for text in SCHEMA_TEXT), message
    return message


def test_misspelt_nested_key_is_named_with_the_nearest_valid_key():
    message = problem(lambda c: c["proxies"]["spec_fixedW"].update(gama=0.1))
    assert "proxies.spec_fixedW.gama: unknown key 'gama'; did you mean 'gamma'?" in message
    assert "valid keys here: input, dictionary, alpha, beta, gamma," in flat(message)
    assert len(message.splitlines()) < 15


def test_misspelt_top_level_key():
    message = problem(lambda c: c.update(teachr={"batch_size": 8}))
    assert "teachr: unknown key 'teachr'; did you mean 'teacher'?" in message
    assert "valid keys here: results, results_anywhere, seed, demo, corpora, mixes, debian_packages, training_corpora," in flat(message)
    assert len(message.splitlines()) < 15


def test_key_in_the_wrong_section_says_where_it_belongs():
    message = problem(lambda c: c["scoring"].update(tau=0.3))
    assert "scoring.tau: unknown key 'tau'; it is a setting of explain, not of scoring" in flat(message)
    message = problem(lambda c: c["teacher"].update(gamma=1.0))
    assert "teacher.gamma: unknown key 'gamma'; it is a setting of proxy_defaults, proxies.<name>," in flat(message)


def test_wrong_type_names_the_path_and_the_reason():
    message = problem(lambda c: c["teacher"].update(batch_size="big"))
    assert "teacher.batch_size: 'big' is not of type 'integer'" in message
    assert len(message.splitlines()) <= 4


def test_alternatives_are_described_not_dumped():
    message = problem(lambda c: c["features"].update(half="yes", layers=[0, -1]))
    assert "features.half: 'yes' is not valid here; expected a boolean (true/false) or 'auto'" in message
    assert "features.layers[1]: -1 is less than the minimum of 0" in message  # the list branch, item by item


def test_every_problem_is_listed():
    def edit(c):
        c["teacher"]["batch_size"] = "big"
        c["scoring"]["threshold"] = 3
        c["nmf"]["segments"] = {"speach": 3}
        c["corpora"]["mine"] = {"adapter": "aragonn", "splits": {"train": {"rtm": "a.rttm"}}}
        c["mixes"] = {"demo_extra": {"sources": "s"}}
        c["demo"]["radio"] = {"file": {"train": 2}}

    message = problem(edit)
    assert message.startswith("invalid config (7 problems)")
    for line in ["teacher.batch_size: 'big' is not of type 'integer'",
                 "scoring.threshold: 3 is greater than the maximum of 1",
                 "nmf.segments.speach: unknown key 'speach'; did you mean 'speech'?",
                 "corpora.mine.adapter: 'aragonn' is not one of",
                 "corpora.mine.splits.train.rtm: unknown key 'rtm'; did you mean 'rttm'?",
                 "mixes.demo_extra: the name 'demo_extra' is not allowed here",
                 "demo.radio.file: unknown key 'file'; did you mean 'files'?"]:
        assert line in flat(message), (line, message)


def test_required_keys_and_the_cap_on_problems():
    message = problem(lambda c: c.update(corpora={f"c{i}": {"adapter": "generic"} for i in range(12)}), limit=10)
    assert "corpora.c0.splits: required key missing" in message
    assert message.count("required key missing") == 10 and "... and 2 more" in message
    message = problem(lambda c: c.pop("corpora"))
    assert "corpora: required key missing" in message


def test_the_file_that_set_a_wrong_value_is_named(tmp_path):
    base, overlay = tmp_path / "base.yaml", tmp_path / "overlay.yaml"
    base.write_text(yaml.safe_dump(DEMO))
    overlay.write_text(yaml.safe_dump({"teacher": {"batch_size": "big"}}))

    def edit(c):
        c["teacher"]["batch_size"] = "big"
        c["seed"] = "zero"

    message = problem(edit, configfiles=[base, overlay], overrides={"seed": "zero"})
    assert f"in {base}, {overlay}, --config:" in message.splitlines()[0]
    assert f"teacher.batch_size: 'big' is not of type 'integer' (set in {overlay})" in flat(message)
    assert "seed: 'zero' is not of type 'integer' (set in --config)" in flat(message)


def test_valid_config_is_left_unchanged():
    config = copy.deepcopy(DEMO)
    check_config(config, SCHEMA)
    assert config == DEMO  # no defaults filled in: snakemake's validate does that afterwards


def test_a_corpus_may_say_its_splits_share_files():
    """``shared_files`` (read by ``check_corpus``) is a key the check lets through, and only a boolean."""
    config = copy.deepcopy(DEMO)
    config["corpora"]["demo_radio"]["shared_files"] = True
    check_config(config, SCHEMA)
    assert "corpora.demo_radio.shared_files: 'yes' is not of type 'boolean'" in flat(
        problem(lambda c: c["corpora"]["demo_radio"].update(shared_files="yes")))


@pytest.mark.parametrize("name", ["config.yaml", *sorted(p.name for p in (REPO / "config").glob("*.yaml"))])
def test_shipped_configs_are_valid(name):
    """config.yaml and config/*.yaml (each passed alone with --configfile: it replaces the demo's config)."""
    path = REPO / name if name == "config.yaml" else REPO / "config" / name
    check_config(yaml.safe_load(path.read_text()), SCHEMA)


@pytest.mark.parametrize("name", sorted(p.name for p in (REPO / "examples").glob("*.yaml")))
def test_example_overlays_merged_on_the_demo_are_valid(name):
    from snakemake.utils import update_config

    config = copy.deepcopy(DEMO)
    update_config(config, yaml.safe_load((REPO / "examples" / name).read_text()))
    check_config(config, SCHEMA)


@pytest.mark.slow
def test_dry_run_with_a_misspelt_key_prints_a_short_message(tmp_path):
    config = copy.deepcopy(DEMO)
    config["proxies"]["spec_fixedW"]["gama"] = 0.1
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--directory", str(tmp_path),
           "--configfile", str(tmp_path / "config.yaml"), "--cores", "1", "-n"]
    run = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=3600)
    said = run.stdout + run.stderr
    assert run.returncode != 0
    assert "proxies.spec_fixedW.gama: unknown key 'gama'; did you mean 'gamma'?" in said
    assert not any(text in said for text in SCHEMA_TEXT), said
    assert len(said.splitlines()) < 15, said


def _set(path, value):
    """An edit of the demo config that sets the key at ``path`` (a tuple of keys) to ``value``."""
    def edit(config):
        node = config
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = value
    return edit


def _rename(section, old, new, *inner):
    """An edit that renames entry ``old`` of ``config[section]...`` (inner keys first) to ``new``."""
    def edit(config):
        node = config[section]
        for key in inner:
            node = node[key]
        node[new] = node.pop(old)
    return edit


NAME_RULE_TEXT = "a name is 1 to 64 letters, digits and _ . + -, starting with a letter or digit"

# (config change, expected message fragment): names become folders (export/<proxy>/, corpora/<name>/)
BAD_NAMES = [
    (_rename("proxies", "spec_fixedW", ".."), "proxies['..']: the name '..' is not allowed here"),
    (_rename("proxies", "spec_fixedW", "a/b"), "proxies['a/b']: the name 'a/b' is not allowed here"),
    (_rename("proxies", "spec_fixedW", ".hidden"), "proxies['.hidden']: the name '.hidden' is not allowed"),
    (_rename("proxies", "spec_fixedW", "-x"), "proxies['-x']: the name '-x' is not allowed here"),
    (_rename("corpora", "demo_radio", "demo radio"), "corpora['demo radio']: the name 'demo radio' is not"),
    (_rename("corpora", "demo_meeting", "x" * 65), "the name 'xxxxxxx"),
    (_rename("corpora", "test", "../test", "demo_radio", "splits"), "corpora.demo_radio.splits['../test']: the name"),
    (_set(("mixes",), {"my mix": {"sources": "s"}}), "mixes['my mix']: the name 'my mix' is not allowed here"),
    (_set(("mixes",), {"m": {"sources": "s", "files": {"tr ain": 2}}}), "mixes.m.files['tr ain']: the name"),
    (_set(("demo", "radio", "files"), {"../train": 2}), "demo.radio.files['../train']: the name"),
    (_set(("training_corpora",), ["demo_radio", "../x"]), "training_corpora[1]: '../x' is not allowed here"),
    (_set(("nmf", "corpora"), ["a b"]), "nmf.corpora[0]: 'a b' is not allowed here"),
    (_set(("scoring", "split"), "te st"), "scoring.split: 'te st' is not allowed here"),
    (_set(("scoring", "agreement_splits"), ["/abs"]), "scoring.agreement_splits[0]: '/abs' is not allowed"),
    (_set(("explain", "splits"), [".."]), "explain.splits[0]: '..' is not allowed here"),
    (_set(("export", "proxies"), ["../x"]), "export.proxies[0]: '../x' is not allowed here"),
]


@pytest.mark.parametrize("edit, fragment", BAD_NAMES)
def test_names_that_are_not_plain_folder_names_are_refused(edit, fragment):
    message = flat(problem(edit))
    assert fragment in message, message
    assert NAME_RULE_TEXT in message


def test_mix_names_keep_their_own_rule():
    assert "mixes.demo_x: the name 'demo_x' is not allowed here (it must not match '^demo_')" in \
        flat(problem(_set(("mixes",), {"demo_x": {"sources": "s"}})))


def test_every_name_in_the_schema_uses_the_one_pattern():
    from proxyseg.core.names import NAME_PATTERN, is_name

    schema = yaml.safe_load(SCHEMA.read_text())
    assert schema["$defs"]["name"]["pattern"] == NAME_PATTERN
    patterns, refs = [], 0

    def walk(node):
        nonlocal refs
        if isinstance(node, dict):
            if "pattern" in node and node is not schema["$defs"]["name"]:
                patterns.append(node["pattern"])
            names = node.get("propertyNames")
            if names is not None:
                assert names.get("$ref") == "#/$defs/name", names
            refs += node.get("$ref") == "#/$defs/name"
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(schema)
    # the only other patterns: audio's {uri} template, debian package names, the mixes' demo_ prefix
    assert sorted(patterns) == sorted(["\\{uri\\}", "^[a-z0-9][a-z0-9+.-]+$", "^demo_"])
    assert refs == 13  # corpora and their splits, mixes and their files, demo files, proxies, 7 lists and scoring.split
    assert all(map(is_name, ["demo_radio", "spec_fixedW", "train", "a.b+c-d", "x" * 64]))
    assert not any(map(is_name, ["..", ".", "", "a/b", "a b", ".x", "-x", "x" * 65, "a\nb"]))


@pytest.mark.parametrize("results, fragment", [
    ("", "results: is empty"),
    ("/", "results: '/' is the file-system root"),
    ("//", "is the file-system root"),
    (".", "results: '.' is the working directory, not a folder below or beside"),
    ("./", "is the working directory"),
    ("..", "not a folder below or beside the working directory"),
    ("../..", "not a folder below or beside the working directory"),
    ("../../elsewhere", "not a folder below or beside the working directory"),
    ("results/../../..", "not a folder below or beside the working directory"),
    ("/etc", "'/etc' is /etc, not a folder below or beside"),
])
def test_results_must_be_a_folder_below_or_beside_the_working_directory(tmp_path, monkeypatch, results, fragment):
    work = tmp_path / "a" / "work"
    work.mkdir(parents=True)
    monkeypatch.chdir(work)
    message = flat(problem(_set(("results",), results)))
    assert fragment in message, message
    assert "results_anywhere: true" in message or "root" in message or "empty" in message


def test_results_below_beside_or_anywhere_when_asked(tmp_path, monkeypatch):
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    for results in ["results", "results/run2", "../results-run2", str(work / "out"), str(tmp_path / "sibling")]:
        config = copy.deepcopy(DEMO)
        config["results"] = results
        check_config(config, SCHEMA)
    config = {**copy.deepcopy(DEMO), "results": "/scratch/me/results", "results_anywhere": True}
    check_config(config, SCHEMA)
    with pytest.raises(ConfigError, match="file-system root"):
        check_config({**config, "results": "/"}, SCHEMA)


def test_a_key_set_twice_in_a_config_file_is_refused(tmp_path):
    """YAML keeps the last of two ``teacher:`` sections in silence: max_epochs 2 became 100."""
    path = tmp_path / "config.yaml"
    path.write_text("results: results\ncorpora: {a: {adapter: folder, root: r, splits: {train: {}}}}\n"
                    "teacher:\n  max_epochs: 2\nseed: 1\nteacher:\n  max_epochs: 100\n"
                    "proxies:\n  p:\n    alpha: 1\n    alpha: 2\n")
    config = yaml.safe_load(path.read_text())
    with pytest.raises(ConfigError) as error:
        check_config(config, SCHEMA, configfiles=[path])
    message = str(error.value)
    assert f"{path}:6: key `teacher` appears twice (first at line 3)" in message
    assert message.startswith("invalid config (1 problem)")
    path.write_text(path.read_text().replace("seed: 1\nteacher:\n  max_epochs: 100\n", ""))
    with pytest.raises(ConfigError, match=r"config.yaml:8: key `alpha` appears twice \(first at line 7\)"):
        check_config(yaml.safe_load(path.read_text()), SCHEMA, configfiles=[path])


@pytest.mark.parametrize("edit, fragment", [
    (_set(("seed",), 2 ** 32), "seed: 4294967296 is greater than the maximum of 4294967295"),
    (_set(("seed",), -1), "seed: -1 is less than the minimum of 0"),
    (_set(("demo", "seed"), 2 ** 40), "demo.seed: 1099511627776 is greater than the maximum"),
    (_set(("features", "demo_seed"), -5), "features.demo_seed: -5 is less than the minimum of 0"),
    (lambda c: c["proxies"]["spec_fixedW"].update(seed=2 ** 33), "proxies.spec_fixedW.seed: 8589934592 is greater"),
    (_set(("teacher", "crop_seconds"), 0.01), "teacher.crop_seconds: 0.01 is less than the minimum of 0.02"),
    (_set(("proxy_defaults", "crop_seconds"), 0.001), "proxy_defaults.crop_seconds: 0.001 is less than the minimum"),
    (_set(("nmf", "components"), 10 ** 12), "nmf.components: 1000000000000 is greater than the maximum of 4096"),
    (lambda c: c["proxies"]["spec_fixedW"].update(nmf={"components": 5000}), "proxies.spec_fixedW.nmf.components: 5000"),
    (_set(("spectrogram", "n_fft"), 10 ** 9), "spectrogram.n_fft: 1000000000 is greater than the maximum of 65536"),
    (_set(("explain", "segment_seconds"), 0.001), "explain.segment_seconds: 0.001 is less than the minimum of 0.02"),
    (_set(("explain", "prototype_seconds"), 0.01), "explain.prototype_seconds: 0.01 is less than the minimum"),
    (_set(("saliency", "segment_seconds"), 0.01), "saliency.segment_seconds: 0.01 is less than the minimum"),
])
def test_values_that_would_fail_late_are_refused_with_their_range(edit, fragment):
    assert fragment in flat(problem(edit))
