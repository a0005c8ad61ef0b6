"""What the workflow runs, decided from the config (proxyseg.plan; workflow/rules/common.smk calls it)."""

import pytest

from proxyseg import plan
from proxyseg import settings as S
from proxyseg.core.errors import InputError

CORPORA = {"a": {"adapter": "generic", "splits": {"train": {}, "dev": {}, "test": {}}},
           "b": {"adapter": "generic", "splits": {"train": {}, "dev": {}}},
           "c": {"adapter": "generic", "splits": {"test": {}}}}


def _config(**overrides):
    config = {"corpora": CORPORA, "proxy_defaults": {"alpha": 30}, "nmf": {"components": 8},
              "proxies": {"p1": {"input": "spectrogram"}, "p2": {"gamma": 0.3, "nmf": {"mu": 0.5}},
                          "p3": {"nmf": {"mu": 0.5}}, "p4": {"nmf": {"components": 8}}}}
    config.update(overrides)
    return plan.fill(config)


def test_fill_gives_every_section_and_proxy_its_defaults_from_the_settings_classes():
    config = _config()
    for name, cls in S.SECTIONS.items():
        assert set(config[name]) == set(cls().keys()), name
    assert config["nmf"]["components"] == 8 and config["nmf"]["mu"] == S.NMF.mu
    assert config["teacher"] == S.Teacher().as_dict() and config["runtime"]["device"] == "auto"
    p2 = config["proxies"]["p2"]
    assert (p2["alpha"], p2["gamma"], p2["input"], p2["nmf"]) == (30.0, 0.3, "wavlm", {"mu": 0.5})
    assert plan.proxy_settings(config, "p1") == S.Proxy.parse({"alpha": 30, "input": "spectrogram"}).as_dict()
    assert "nmf" not in plan.proxy_settings(config, "p2")
    assert plan.fill(config) == config  # filling again changes nothing


def test_a_bad_or_moved_key_names_its_place():
    with pytest.raises(InputError, match=r"config proxies\.p1\.gamma: -1.0 must be >= 0"):
        _config(proxies={"p1": {"gamma": -1}})
    with pytest.raises(InputError, match=r"config teacher\.dump_step is now inference\.step"):
        _config(teacher={"dump_step": 0.2})
    with pytest.raises(InputError, match=r"config proxies\.p1\.device is now runtime\.device"):
        _config(proxies={"p1": {"device": "cpu"}})
    with pytest.raises(InputError, match="reserved"):
        _config(proxies={"teacher": {}})
    with pytest.raises(InputError, match=r"config proxies\.p1\.nmf: unknown setting\(s\) 'mus' \(did you mean mu\?\)"):
        _config(proxies={"p1": {"nmf": {"mus": 1}}})


def test_proxies_with_the_same_nmf_overrides_share_one_dictionary_named_after_the_first():
    config = _config()
    variants = plan.nmf_variants(config, ["a", "b"], CORPORA)
    assert list(variants) == ["p2"]  # p3 has p2's overrides; p4's equal the global nmf section
    assert variants["p2"]["mu"] == 0.5 and variants["p2"]["corpora"] == ["a", "b"]
    assert plan.nmf_variant(variants, plan.nmf_settings(config, ["a", "b"], "p3")) == "p2"
    assert plan.nmf_variant(variants, plan.nmf_settings(config, ["a", "b"], "p4")) == ""
    assert plan.nmf_variant(variants, plan.nmf_settings(config, ["a", "b"])) == ""
    bad = _config(proxies={"p1": {"nmf": {"corpora": ["c"]}}})
    with pytest.raises(InputError, match=r"proxies\.p1\.nmf\.corpora: 'c' is not a corpus with a train split"):
        plan.nmf_variants(bad, ["a"], CORPORA)


def test_corpus_checks_name_the_key():
    plan.check_corpora(CORPORA, ["a", "b"])
    with pytest.raises(InputError, match=r"training_corpora: 'z' is not a corpus"):
        plan.check_corpora(CORPORA, ["z"])
    with pytest.raises(InputError, match=r"corpora\.c\.splits: a training corpus needs a 'train' split"):
        plan.check_corpora(CORPORA, ["c"])
    with pytest.raises(InputError, match=r'corpora\.a\.label_map: key False is not a string.*"no": noise'):
        plan.check_corpora({"a": {**CORPORA["a"], "label_map": {False: "noise"}}}, [])
    plan.check_corpora(CORPORA, ["a"], ["dev"])
    with pytest.raises(InputError, match=r"scoring\.agreement_splits: no corpus has a split 'heldotu'"):
        plan.check_corpora(CORPORA, ["a"], ["heldotu"])  # a typo would measure nothing, in silence


@pytest.mark.parametrize("kwargs, fragment", [
    ({"agreement_splits": ["heldotu"]}, "scoring.agreement_splits: no corpus has a split 'heldotu'"),
    ({"scored_split": "tset"}, "scoring.split: no corpus has a split 'tset'"),
    ({"explain_splits": ["test", "dve"]}, "explain.splits: no corpus has a split 'dve'"),
])
def test_a_misspelt_split_is_refused_before_training_with_the_valid_names(kwargs, fragment):
    """Found only after training before: scoring.split, agreement and explained splits the corpora lack."""
    with pytest.raises(InputError) as error:
        plan.check_corpora(CORPORA, ["a"], **kwargs)
    assert fragment in str(error.value)
    assert "(the corpora's splits: dev, test, train)" in str(error.value)
    plan.check_corpora(CORPORA, ["a"], ["dev"], "test", ["test", "dev"])


def test_paths_of_generated_corpora_and_the_demo_pretraining():
    assert plan.with_results({"root": "{results}/corpora/x", "n": 1}, "out") == {"root": "out/corpora/x", "n": 1}
    assert plan.generated_folder("out/corpora/demo_radio/audio/f.flac", "out", ["demo_radio"]) == "out/corpora/demo_radio"
    assert plan.generated_folder("out/corpora/demo_radio2/f.flac", "out", ["demo_radio"]) is None
    features = _config()["features"]
    assert plan.demo_pretrain(features)["steps"] == S.DemoPretrain.steps
    assert plan.demo_pretrain({**features, "model": "untrained-demo"})["steps"] == 0
