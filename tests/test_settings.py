"""The settings objects (proxyseg.settings) against the workflow's schema: same keys, no second default,
the same values accepted and refused; and how a bad value is reported."""

import dataclasses
from pathlib import Path

import jsonschema
import pytest
import yaml

from proxyseg import settings as S
from proxyseg.core.errors import InputError

SCHEMA = yaml.safe_load((Path(__file__).resolve().parents[1] / "workflow/schemas/config.schema.yaml").read_text())
PROPS = SCHEMA["properties"]

# (schema node of a section, its settings class, keys of the node that are not settings of the class)
NODES = [(PROPS[name], cls, set()) for name, cls in S.SECTIONS.items()]
NODES += [(PROPS["features"]["properties"]["demo_pretrain"], S.DemoPretrain, set()),
          (PROPS["proxies"]["additionalProperties"], S.Proxy, {"nmf"}),
          (PROPS["proxies"]["additionalProperties"]["properties"]["nmf"], S.NMF, set()),
          (PROPS["mixes"]["additionalProperties"], S.Mix, {"sources"})]
IDS = [f"{cls.__name__}@{i}" for i, (_, cls, _) in enumerate(NODES)]

PROBES = [-1, -0.5, 0, 0.01, 0.05, 0.5, 0.99, 1, 1.0, 2, 2.5, 3, 15, 16, 400, 10 ** 9, True, False, None, "x",
          "auto", "all", "", [], [0], [-1], [3, 1], ["a"], [1.0, 2.0], {}, {"speech": 2}, {"speech": 0},
          {"speech": 2.5}, {"bogus": 1}]


def _fields(cls):
    return [f.name for f in dataclasses.fields(cls)]


@pytest.mark.parametrize("node, cls, extra", NODES, ids=IDS)
def test_schema_and_settings_have_the_same_keys(node, cls, extra):
    assert set(node["properties"]) - extra == set(_fields(cls))
    assert node.get("additionalProperties") is False


def _defaults(node, path=""):
    for key, sub in node.get("properties", {}).items():
        if "default" in sub:
            yield f"{path}{key}"
        yield from _defaults(sub, f"{path}{key}.")


@pytest.mark.parametrize("node, cls, extra", NODES, ids=IDS)
def test_the_settings_class_is_the_only_home_of_defaults(node, cls, extra):
    assert list(_defaults(node)) == []
    cls.parse({})  # every field has a default


@pytest.mark.parametrize("node, cls, extra", NODES, ids=IDS)
def test_schema_and_settings_accept_the_same_values(node, cls, extra):
    """Every key with every probe value: valid for the schema exactly when the class accepts it (a refusal
    about another key, from a check across keys, is not counted)."""
    validator = jsonschema.Draft202012Validator({**node, "required": [], "$defs": SCHEMA["$defs"]})
    disagree = []
    for key in _fields(cls):
        for value in PROBES + node["properties"][key].get("enum", []):
            by_schema = validator.is_valid({key: value})
            try:
                cls.parse({key: value}, "s")
                by_code = True
            except InputError as err:
                if f"s.{key}" not in str(err):
                    continue
                by_code = False
            if by_schema != by_code:
                disagree.append((key, value, "schema" if by_schema else "code"))
    assert disagree == [], "(key, value, only accepted by)"


def test_a_bad_value_names_the_key_and_a_misspelt_key_its_nearest():
    with pytest.raises(InputError, match=r"proxy_defaults\.gamma: -1.0 must be >= 0"):
        S.Proxy.parse({"gamma": -1})
    with pytest.raises(InputError, match=r"'gama' \(did you mean gamma\?\)"):
        S.Proxy.parse({"gama": 0.1})
    with pytest.raises(InputError, match=r"teacher\.pos_weight: unknown key\(s\) \['speach'\]"):
        S.Teacher.parse({"pos_weight": {"speach": 2}})
    with pytest.raises(InputError, match=r"spectrogram: win_length: 400 is longer than n_fft 256"):
        S.Spectrogram.parse({"n_fft": 256})


def test_parsed_settings_are_typed_and_read_like_a_mapping():
    s = S.Proxy.parse({"gamma": 1, "repeats": 3.0, "steps_per_epoch": None})
    assert (s.gamma, type(s.gamma), s.repeats, type(s.repeats)) == (1.0, float, 3, int)
    assert s["alpha"] == 10.0 and dict(s) == s.as_dict() and S.Proxy.parse(s.as_dict()) == s
    nested = S.Features.parse({"demo_pretrain": {"steps": 2}})
    assert nested.demo_pretrain.steps == 2 and nested.as_dict()["demo_pretrain"]["batch_size"] == 8
    assert S.NMF.parse({"beta": 1}).beta == 1.0 and type(S.NMF.parse({"beta": 1}).beta) is float
