import json
import os
import shlex

from snakemake.utils import validate


validate(config, schema="../schemas/config.schema.yaml")

R = config["results"].rstrip("/")


def _with_results(value):
    """Corpus paths may say {results} for the results folder (where the demo corpora are generated)."""
    if isinstance(value, str):
        return value.replace("{results}", R)
    if isinstance(value, dict):
        return {k: _with_results(v) for k, v in value.items()}
    return value


CORPORA = {name: _with_results(spec) for name, spec in config["corpora"].items()}
DEMO = config["demo"]
DEMO_KINDS = ["radio", "meeting"] if DEMO["enabled"] else []
TRAINING_CORPORA = config["training_corpora"] or list(CORPORA)
FEATURES = config["features"]
# "demo": the workflow builds a small WavLM and pre-trains it on the training audio (features.demo_pretrain);
# "untrained-demo": the same WavLM with random weights.
DEMO_MODEL = FEATURES["model"] in ("demo", "untrained-demo")
PROXIES = config["proxies"]
SYSTEMS = ["teacher", *PROXIES]
SCORING = config["scoring"]

for _name, _corpus in CORPORA.items():
    for _key in _corpus.get("label_map", {}):
        if not isinstance(_key, str):
            raise ValueError(
                f"config corpora.{_name}.label_map: key {_key!r} is not a string; YAML reads bare "
                "no/yes/on/off as booleans, so quote the label (\"no\": noise)"
            )

for _name in TRAINING_CORPORA:
    if _name not in CORPORA:
        raise ValueError(f"config training_corpora: {_name!r} is not a corpus (have {sorted(CORPORA)})")
    for _split in ("train", "dev"):
        if _split not in CORPORA[_name]["splits"]:
            raise ValueError(f"config corpora.{_name}.splits: a training corpus needs a {_split!r} split")


if "teacher" in PROXIES:
    raise ValueError("config proxies: 'teacher' is reserved for the teacher; rename that proxy")


wildcard_constraints:
    corpus="|".join(CORPORA),
    proxy="|".join(PROXIES) or "^$",
    system="|".join(SYSTEMS),
    split=r"[^/]+",
    kind="radio|meeting",


def as_json(value):
    """A config section as a JSON argument; rules rerun when (and only when) it changes."""
    return json.dumps(value, sort_keys=True)


def corpus_settings(corpus, split):
    """The corpus entry restricted to one split, so editing another split reruns nothing here."""
    spec = dict(CORPORA[corpus])
    spec["splits"] = {split: spec["splits"][split]}
    return spec


def splits(corpus):
    return list(CORPORA[corpus]["splits"])


def corpus_split_pairs():
    return [(c, s) for c in CORPORA for s in splits(c)]


def demo_marker(kind):
    return f"{R}/corpora/demo_{kind}/provenance.json"


def annotation_inputs(wildcards):
    """The list/RTTM/UEM files of a split; files of a demo corpus come from its generation job."""
    files = CORPORA[wildcards.corpus]["splits"][wildcards.split]
    out = []
    for path in (files["list"], files["rttm"], files.get("uem")):
        if not path:
            continue
        kind = next((k for k in DEMO_KINDS if path.startswith(f"{R}/corpora/demo_{k}/")), None)
        out.append(demo_marker(kind) if kind else path)
    return sorted(set(out))


def wavlm_model():
    return f"{R}/models/wavlm-{FEATURES['model']}" if DEMO_MODEL else FEATURES["model"]


def demo_pretrain_settings():
    """features.demo_pretrain, with no steps for the untrained-demo model."""
    steps = FEATURES["demo_pretrain"]["steps"] if FEATURES["model"] == "demo" else 0
    return {**FEATURES["demo_pretrain"], "steps": steps}


def demo_pretrain_audio():
    """Manifests of the training corpora's train splits: the audio the demo WavLM is pre-trained on."""
    if not demo_pretrain_settings()["steps"]:
        return []
    return [labels(c, "train", "manifest.tsv") for c in TRAINING_CORPORA]


def feature_settings():
    return {k: v for k, v in FEATURES.items() if k not in ("model", "demo_seed", "demo_pretrain", "demo_wavlm")}


TEACHER_DUMP_KEYS = ("dump_step", "dump_batch_size", "device")


def teacher_train_settings():
    return {k: v for k, v in config["teacher"].items() if not k.startswith("dump_")}


def teacher_dump_settings():
    return {k: v for k, v in config["teacher"].items() if k in TEACHER_DUMP_KEYS}


def labels(corpus, split, name):
    return f"{R}/labels/{corpus}/{split}/{name}"


def features(corpus, split):
    return f"{R}/features/{corpus}/{split}.h5"


def spectrograms(corpus, split):
    return f"{R}/spectrograms/{corpus}/{split}.h5"


def inference(system, corpus, split):
    return f"{R}/inference/{system}/{corpus}/{split}.h5"


def proxy_settings(name):
    """proxy_defaults overridden by the proxy's own entry: a proxy reruns only when its settings change."""
    return {**config["proxy_defaults"], **PROXIES[name]}


def proxy_pairs(split):
    """DUMP.h5 SPECTROGRAMS.h5 pairs of the training corpora for ``split``."""
    return [p for c in TRAINING_CORPORA for p in (f"{R}/teacher/dump/{c}/{split}.h5", spectrograms(c, split))]


def explain_items(proxy, splits):
    """INFERENCE.h5 SPECTROGRAMS.h5 TARGETS.h5 triples of ``proxy`` on ``splits`` of every corpus."""
    return [p for c in CORPORA for s in splits if s in CORPORA[c]["splits"]
            for p in (inference(proxy, c, s), spectrograms(c, s), labels(c, s, "targets.h5"))]


def teacher_pairs(split):
    """FEATURES.h5 TARGETS.h5 pairs of the training corpora for ``split``."""
    return [p for c in TRAINING_CORPORA for p in (features(c, split), labels(c, split, "targets.h5"))]


def all_outputs():
    out = [f"{R}/tables/class_hours.tsv", f"{R}/teacher/curve.png", f"{R}/nmf/atoms.png"]
    out += [f"{R}/teacher/dump/{c}/{s}.h5" for c, s in corpus_split_pairs()]
    if PROXIES:
        out += [f"{R}/tables/segmentation.md", f"{R}/tables/fidelity.md"]
        out += [f"{R}/proxies/{p}/curve.png" for p in PROXIES]
        out += [f"{R}/explanations/{p}/prototypes.png" for p in PROXIES]
    else:
        out += [f"{R}/tables/segmentation.md"]
    return out
