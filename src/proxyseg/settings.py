"""The settings of every config section: the one home of their defaults and checks.

Each class below is one section of ``config.yaml`` (its ``SECTION``); the workflow's schema
(``workflow/schemas/config.schema.yaml``) describes the same keys for users and a test fails when the two
disagree (keys, bounds, choices). The workflow fills a section through its class and passes it to a stage
as ``--settings`` JSON; the stage's CLI parses it back into the class (``Proxy.parse``), so a direct CLI
user gets the same defaults and checks. Settings that choose where and how fast a step runs, not what it
computes, are in :class:`Runtime`: changing them reruns nothing.

Kept light (no torch): the Snakefile imports this module at parse time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal, get_args

from proxyseg.core.aggregate import DEFAULT as DEFAULT_AGGREGATE, Aggregate
from proxyseg.core.frames import CLASSES, FRAME_RATE
from proxyseg.core.names import NAME_RULE, is_name
from proxyseg.core.settings import MOVED, Settings, setting

__all__ = ["AGGREGATES", "REFILLS", "DICTIONARY_MODES", "INPUTS", "KD_DIRECTIONS", "LR_SCHEDULES",
           "MASK_DOMAINS", "RELEVANCES", "BIN_ORDERS", "MOVED", "SECTIONS", "DemoPretrain", "Mix", "Explain", "Export", "Faithfulness", "Features",
           "Groundtruth", "Inference", "NMF", "Proxy", "Runtime", "Saliency", "Scoring", "Spectrogram", "Teacher",
           "Training"]

# The choices of the settings that take one of a few values (a field's type; the tuples for messages)
LrSchedule = Literal["constant", "cosine"]
Input = Literal["wavlm", "spectrogram"]
DictionaryMode = Literal["fixed", "learned", "learned_random"]
KdDirection = Literal["teacher_proxy", "proxy_teacher"]
MaskDomain = Literal["linear", "log"]
Refill = Literal["zero", "floor"]
Relevance = Literal["linear", "occlusion"]
BinOrder = Literal["atoms", "map"]
TeacherKind = Literal["wavlm", "pyannote", "silero"]
Material = Literal["labels", "teacher"]
AGGREGATES, LR_SCHEDULES, INPUTS, DICTIONARY_MODES, KD_DIRECTIONS, MASK_DOMAINS, REFILLS, TEACHER_KINDS, \
    MATERIALS, RELEVANCES, BIN_ORDERS = (get_args(t) for t in (Aggregate, LrSchedule, Input, DictionaryMode,
                                                               KdDirection, MaskDomain, Refill, TeacherKind,
                                                               Material, Relevance, BinOrder))


def _check_names(settings: Settings, **names: list) -> None:
    """Split names are folder names: the schema's pattern (proxyseg.core.names), for a direct CLI call too."""
    for key, values in names.items():
        bad = [v for v in values if not is_name(v)]
        if bad:
            raise settings.invalid(f"{key}: {bad[0]!r} is not allowed: {NAME_RULE}")


@dataclass(frozen=True)
class Runtime(Settings):
    """Where and how fast steps run; never a reason to rerun one (results may differ in the last bits
    between a CPU and a GPU)."""

    SECTION: ClassVar[str] = "runtime"
    device: str = setting("auto")                   # auto (a GPU when present), cpu, cuda, cuda:N
    num_workers: int = setting(0, ge=0)             # DataLoader workers of the trainings
    preload_mb: float = setting(2048.0, ge=0)       # training data up to this size read into memory once
    feature_batch_size: int = setting(4, ge=1)      # WavLM chunks per forward pass
    inference_batch_size: int = setting(16, ge=1)   # windows per forward pass (teacher dump, proxy inference)


@dataclass(frozen=True)
class DemoPretrain(Settings):
    """Self-supervised pre-training of the demo WavLM (:mod:`proxyseg.features.pretrain`)."""

    SECTION: ClassVar[str] = "features.demo_pretrain"
    steps: int = setting(100, ge=0)
    batch_size: int = setting(8, ge=1)
    crop_seconds: float = setting(2.0, ge=0.05)
    lr: float = setting(2e-3, gt=0)
    warmup: float = setting(0.1, ge=0, le=1)        # share of the steps with a rising learning rate
    weight_decay: float = setting(0.01, ge=0)
    mask_prob: float = setting(0.065, gt=0, lt=1)   # a frame starts a masked span (HuBERT: 0.08, span 10)
    mask_span: int = setting(10, ge=1)
    unmasked_weight: float = setting(1.0, ge=0)     # loss weight of unmasked frames (HuBERT: 0)
    n_mels: int = setting(40, ge=1)


@dataclass(frozen=True)
class Features(Settings):
    """WavLM feature caching (METHOD §3)."""

    SECTION: ClassVar[str] = "features"
    model: str = setting("demo")
    revision: str | None = setting(None)
    layers: Literal["all"] | list[int] = setting("all", items={"ge": 0})
    chunk_seconds: float = setting(30.0, gt=0)
    overlap_seconds: float = setting(2.5, ge=0)
    half: bool | Literal["auto"] = setting("auto")
    normalize: bool | Literal["auto"] = setting("auto")
    shards: int = setting(1, ge=1)
    demo_seed: int = setting(0, ge=0, le=2**32 - 1)
    demo_wavlm: dict = setting({})
    demo_pretrain: DemoPretrain = setting(DemoPretrain())

    def check(self):
        if isinstance(self.layers, list) and not self.layers:
            raise self.invalid("layers: give at least one layer index, or all")

    #: keys that decide the cached features (the feature rules rerun when one changes)
    EXTRACTION: ClassVar[tuple] = ("revision", "layers", "chunk_seconds", "overlap_seconds", "half", "normalize")


@dataclass(frozen=True)
class Training(Settings):
    """What the teacher and the proxies train alike (:class:`proxyseg.training.Loop`), and their TCN."""

    crop_seconds: float = setting(4.0, ge=0.02)     # training crop (at least one 20 ms frame); also the sliding window
    batch_size: int = setting(32, ge=1)
    lr: float = setting(1e-3, gt=0)
    lr_schedule: LrSchedule = setting("constant")  # cosine: to 0 over max_epochs x steps_per_epoch steps
    max_epochs: int = setting(100, ge=1)
    patience: int = setting(10, ge=1)               # epochs without a better dev loss before stopping
    steps_per_epoch: int | None = setting(None, ge=1)  # None: about one pass over the training frames
    ema: float = setting(0.0, ge=0, lt=1)           # > 0: keep an exponential moving average of the weights
    bottleneck: int = setting(64, ge=1)
    hidden: int = setting(128, ge=1)
    kernel: int = setting(3, ge=1)
    blocks: int = setting(3, ge=1)
    repeats: int = setting(5, ge=1)

    TCN: ClassVar[tuple] = ("bottleneck", "hidden", "kernel", "blocks", "repeats")


@dataclass(frozen=True)
class Teacher(Training):
    """Teacher training (METHOD §3): batches of 64, a TCN of 3 blocks x 5 repeats."""

    SECTION: ClassVar[str] = "teacher"
    # wavlm: the workflow's own WavLM + TCN, trained here; pyannote, silero: a pre-trained black box
    # (proxyseg.teacher.blackbox), whose checkpoint is a local file/folder or a hub id (pyannote only)
    kind: TeacherKind = setting("wavlm")
    checkpoint: str | None = setting(None)
    batch_size: int = setting(64, ge=1)
    weight_decay: float = setting(0.0, ge=0)        # AdamW's decoupled weight decay (0 = Adam, the paper)
    dropout: float = setting(0.0, ge=0, lt=1)       # share of fused feature channels zeroed per crop
    pos_weight: dict[str, float] = setting({}, keys=CLASSES, gt=0)  # class -> BCE weight of positive frames


@dataclass(frozen=True)
class Spectrogram(Settings):
    """log(1 + |STFT|^2) on WavLM's frame grid (METHOD §4)."""

    SECTION: ClassVar[str] = "spectrogram"
    n_fft: int = setting(512, ge=16, le=65536)  # 65536 samples: 4 s at 16 kHz
    win_length: int = setting(400, ge=16)
    # None: the raw level (the paper's); a number: every file brought to that level (dBFS of its loud 20 ms
    # blocks, dictionary.spectrogram.level_gain) before the proxy's spectrogram
    level_db: float | None = setting(None, le=0)

    def check(self):
        if self.win_length > self.n_fft:
            raise self.invalid(f"win_length: {self.win_length} is longer than n_fft {self.n_fft}")


@dataclass(frozen=True)
class NMF(Settings):
    """Sparse NMF dictionary pre-training (METHOD §4)."""

    SECTION: ClassVar[str] = "nmf"
    components: int = setting(128, ge=1, le=4096)  # K; above 4096 the F x K x T activations no longer fit
    beta: Literal[2.0, 1.0, 0.0] = setting(2.0)     # beta-divergence: 2 Euclidean, 1 KL, 0 Itakura-Saito
    mu: float = setting(1.0, ge=0)
    iterations: int = setting(200, ge=1)
    segments: dict[str, int] = setting({"speech": 200, "music": 500, "noise": 500, "overlap": 0}, keys=CLASSES,
                                       ge=0)
    min_seconds: float = setting(1.0, gt=0)
    max_seconds: float = setting(4.0, gt=0)
    corpora: list[str] | None = setting(None)       # the workflow's: whose train splits feed the dictionary
    # labels: runs of annotated frames; teacher: runs of frames the teacher is confident about (unlabelled audio)
    material: Material = setting("labels")
    confidence: float = setting(0.9, gt=0.5, lt=1)  # teacher material: p >= confidence active, <= 1 - it inactive
    background: int = setting(0, ge=0)              # segments where every known class is inactive
    per_class: bool = setting(False)                # one sub-dictionary per class, K shared equally (L2I)

    def check(self):
        if self.corpora is not None and not self.corpora:
            raise self.invalid("corpora: give at least one corpus, or null")


@dataclass(frozen=True)
class Proxy(Training):
    """A proxy's distillation (METHOD §5): ``proxy_defaults`` overridden by its entry of ``proxies``; Psi,
    the TCN that maps the input to H, is smaller than the teacher's (3 blocks x 2 repeats)."""

    SECTION: ClassVar[str] = "proxy_defaults"
    input: Input = setting("wavlm")
    dictionary: DictionaryMode = setting("fixed")
    alpha: float = setting(10.0, ge=0)
    beta: float = setting(1.0, ge=0)
    gamma: float = setting(0.1, ge=0)
    kd_direction: KdDirection = setting("teacher_proxy")
    repeats: int = setting(2, ge=1)
    # [lo, hi] dB: each training crop's spectrogram at a random level (X' = log(1 + g^2 (e^X - 1))), the
    # teacher's target unchanged: for a level-robust black box on corpora of very different levels; None: off
    gain_db: list[float] | None = setting(None)
    # the classes whose bias is shifted after training so that the proxy decides them (at the scoring
    # threshold) on as many frames of the scored corpora's dev splits as its teacher
    # (proxyseg.proxy.calibrate); []: the paper's
    calibrate: list[str] = setting([])
    # this proxy's own training seed (None: the config's `seed`): a second seed of a variant is a second
    # entry of `proxies`, so that both are trained, scored and explained side by side
    seed: int | None = setting(None, ge=0, le=2**32 - 1)  # numpy seeds are 0 .. 2**32 - 1

    PSI: ClassVar[tuple] = Training.TCN

    def check(self):
        unknown = sorted(set(self.calibrate) - set(CLASSES))
        if unknown:
            raise self.invalid(f"calibrate: {unknown} are not classes; choose among {list(CLASSES)}")
        if self.gain_db is not None:
            if len(self.gain_db) != 2 or self.gain_db[0] > self.gain_db[1]:
                raise self.invalid(f"gain_db: {self.gain_db} must be [lo, hi] in dB with lo <= hi")
            if self.input != "spectrogram":
                raise self.invalid("gain_db: applies to spectrogram-input proxies only (input: spectrogram)")


@dataclass(frozen=True)
class Inference(Settings):
    """Sliding-window inference (METHOD §3): teacher dumps, proxy inference, exported models."""

    SECTION: ClassVar[str] = "inference"
    aggregate: Aggregate = setting(DEFAULT_AGGREGATE)
    step: float = setting(0.1, gt=0, le=1)          # window step as a fraction of the window


@dataclass(frozen=True)
class Scoring(Settings):
    """Decisions and pyannote.metrics scores (METHOD §6)."""

    SECTION: ClassVar[str] = "scoring"
    threshold: float = setting(0.5, ge=0, le=1)
    collar: float = setting(0.0, ge=0)
    split: str = setting("test")
    # Agreement with the teacher needs no labels: held-back audio of every kind a proxy will meet
    agreement_splits: list[str] = setting([])

    def check(self):
        _check_names(self, split=[self.split], agreement_splits=self.agreement_splits)


@dataclass(frozen=True)
class Explain(Settings):
    """Local explanations and class prototypes (METHOD §7); ``tau`` and ``mask_domain`` also serve the
    faithfulness and ground-truth checks."""

    SECTION: ClassVar[str] = "explain"
    splits: list[str] = setting(["test"])
    tau: float = setting(0.5)
    segment_seconds: float = setting(2.0, ge=0.02)  # at least one frame
    local_per_class: int = setting(2, ge=0)
    prototype_segments: int = setting(100, ge=1)
    prototype_seconds: float = setting(1.0, ge=0.02)
    threshold: float = setting(0.5, ge=0, le=1)
    mask_domain: MaskDomain = setting("linear")
    relevance: Relevance = setting("linear")       # linear: z_k Theta[c,k] (the paper); occlusion: through the proxy

    def check(self):
        _check_names(self, splits=self.splits)


@dataclass(frozen=True)
class Faithfulness(Settings):
    """The faithfulness test of explanations (METHOD §7, proxyseg.explain.faithfulness): the judge's logit
    drop and flip rate when bins are removed up to shares of the segment's energy."""

    SECTION: ClassVar[str] = "faithfulness"
    segments: int = setting(30, ge=1)
    segment_seconds: float = setting(2.0, gt=0)
    draws: int = setting(5, ge=1)
    energy_levels: list[float] = setting([0.1, 0.25, 0.5, 0.75], gt=0, le=1)
    refill: Refill = setting("zero")
    bins: BinOrder = setting("atoms")              # atoms: atoms in relevance order claim bins; map: r-weighted shares

    def check(self):
        if not self.energy_levels or sorted(set(self.energy_levels)) != list(self.energy_levels):
            raise self.invalid(f"energy_levels: {self.energy_levels} must be increasing, without repeats")
        if self.segment_seconds * FRAME_RATE < 1:
            raise self.invalid(f"segment_seconds: {self.segment_seconds} is shorter than one frame ({1 / FRAME_RATE} s)")


@dataclass(frozen=True)
class Groundtruth(Settings):
    """Listenable explanations scored against the demo corpora's true stems (METHOD §7)."""

    SECTION: ClassVar[str] = "groundtruth"
    segment_seconds: float = setting(2.0, gt=0)
    max_segments: int = setting(200, ge=1)
    energy_share: float = setting(0.9, gt=0, le=1)
    draws: int = setting(5, ge=0)

    def check(self):
        if self.segment_seconds * FRAME_RATE < 1:
            raise self.invalid(f"segment_seconds: {self.segment_seconds} is shorter than one frame ({1 / FRAME_RATE} s)")


@dataclass(frozen=True)
class Saliency(Settings):
    """The teacher's input-gradient saliency over frequency."""

    SECTION: ClassVar[str] = "saliency"
    segments: int = setting(10, ge=1)
    segment_seconds: float = setting(2.0, ge=0.02)
    bands: int = setting(16, ge=2)


@dataclass(frozen=True)
class Export(Settings):
    """Model folders for ``proxyseg segment``."""

    SECTION: ClassVar[str] = "export"
    proxies: Literal["all"] | list[str] = setting("all")
    copy_wavlm: bool = setting(True)


@dataclass(frozen=True)
class Mix(Settings):
    """A mixing corpus (``mixes.<name>``, :mod:`proxyseg.corpora.mixing`) less its ``sources`` folder;
    ``[low, high]`` pairs are drawn uniformly."""

    SECTION: ClassVar[str] = "mixes.<name>"
    seed: int = setting(0, ge=0, le=2**32 - 1)
    files: dict[str, int] = setting({"train": 20, "dev": 4, "test": 4}, ge=1)
    duration: tuple[float, float] = setting([20.0, 40.0], gt=0)      # seconds per file
    speech_probability: float = setting(0.8, ge=0, le=1)             # a file has speech
    music_probability: float = setting(0.5, ge=0, le=1)              # a file has a music bed
    noise_probability: float = setting(0.5, ge=0, le=1)              # a file has a noise bed
    overlap_probability: float = setting(0.3, ge=0, le=1)            # a speech excerpt is overlapped
    speech_seconds: tuple[float, float] = setting([1.5, 8.0], gt=0)  # a speech excerpt before trimming
    gap_seconds: tuple[float, float] = setting([0.2, 2.0], ge=0)     # pause between speech excerpts
    bed_fraction: tuple[float, float] = setting([0.3, 1.0], gt=0, le=1)  # share of the file a bed covers
    music_snr: tuple[float, float] = setting([1.0, 20.0])            # dB, speech over music (authors 1-20)
    noise_snr: tuple[float, float] = setting([5.0, 20.0])            # dB, speech over noise (authors 5-20)
    overlap_snr: tuple[float, float] = setting([1.0, 10.0])          # dB, speech over the overlapping speech
    trim_db: float | None = setting(40.0, gt=0)  # trim excerpts' margins this far below their loudest 10 ms

    def check(self):
        if not self.files:
            raise self.invalid("files: name at least one split")
        for key in ("duration", "speech_seconds", "gap_seconds", "bed_fraction", "music_snr", "noise_snr",
                    "overlap_snr"):
            low, high = getattr(self, key)
            if low > high:
                raise self.invalid(f"{key}: [{low}, {high}] must be [low, high] with low <= high")


#: config section -> its settings class
SECTIONS: dict[str, type[Settings]] = {cls.SECTION: cls for cls in (
    Runtime, Features, Teacher, Spectrogram, NMF, Proxy, Inference, Scoring, Explain, Faithfulness, Groundtruth,
    Saliency, Export)}
