"""One config schema for every command: dataclasses, YAML loading, ``--set`` overrides, validation.

The dataclasses below are the one statement of the defaults (the paper's settings);
``configs/default.yaml`` is generated from them (:func:`defaults_yaml`, with each field's ``#:``
comment) and held equal to them by a test.  A config is loaded from YAML, overridden
with ``--set section.key=value`` pairs (values parsed as YAML, so ``--set train.pnet.lr=0.01`` and
``--set detection.thresholds=[0.5,0.6,0.7]`` both work), and validated once at load.  Unknown keys,
wrong types and impossible values raise :class:`~mtcnn_train.errors.ConfigError` with one line
naming the file, the line and the key.
"""
from __future__ import annotations

import dataclasses
import inspect
import re
import textwrap
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from mtcnn_train.errors import ConfigError, first_line
from mtcnn_train.stages import STAGES

# Settings that take one of a few words are typed as Literal: the loader checks them against the
# type (one place, :func:`_coerce`), and the generated default.yaml lists the choices.
LandmarksFormat = Literal["auto", "celeba", "celeba-aligned", "lfw-net", "mtfl"]
LandmarkBoxes = Literal["auto", "file", "derived"]
Optimizer = Literal["adam", "adamw", "sgd"]
LrSchedule = Literal["constant", "step", "cosine"]
Amp = Literal["off", "bf16", "fp16"]
#: Values of ``train.<stage>.best_by``: a validation loss to minimise, "last", or "detection" (the
#: cascade run over the held-out WIDER images after each epoch: recall at IoU 0.65 within a fixed
#: candidate budget for P-Net and R-Net, AP for O-Net; see evaluation/stages.py).
BestBy = Literal["loss", "loss_det", "loss_box", "loss_landmark", "last", "detection"]
BEST_BY_CHOICES: tuple[str, ...] = typing.get_args(BestBy)
TieBreak = Literal["loss", "loss_det", "loss_box", "loss_landmark"]
CropBorder = Literal["zero", "clip"]
#: Lower bound of ``detection.min_face_size``: 4 px upsamples images 3x (9x the pixels) before
#: P-Net's first pyramid level; smaller faces hold too few pixels for the nets to read.
MIN_DETECTABLE_FACE = 4

@dataclass
class DataConfig:
    """Where the data lives.  Relative paths resolve against the config file's folder."""

    #: Folder holding ``wider_face_split/`` and ``WIDER_<split>/images/``.
    wider_root: str | None = None
    wider_split: str = "train"
    #: Or a face-box set in any box format (instead of ``wider_root``): a COCO .json, a YOLO folder,
    #: list or data.yaml, a Pascal VOC folder, a WIDER-format file or an FDDB root.  Faces in it
    #: with all five landmarks also give landmark crops.
    boxes: str | None = None
    #: ``auto`` (told from the path) or wider, coco, yolo, voc, fddb.
    boxes_format: str = "auto"
    #: Folder the box set's image names are relative to (default: where each format keeps them).
    boxes_images: str | None = None
    #: Labels that are faces (COCO category names or ids, YOLO class ids or names, VOC object
    #: names); empty = every label.
    classes: list[str] = field(default_factory=list)
    #: Labels kept as ignore regions (faces flagged invalid); empty = labels named ``ignore``.
    ignore_classes: list[str] = field(default_factory=list)
    #: COCO keypoint names giving our five points in order (left eye, right eye, nose, left and
    #: right mouth corner, as seen in the image); empty = found by their usual names.
    keypoint_names: list[str] = field(default_factory=list)
    #: A landmark list: CelebA ``list_landmarks_celeba.txt``, LFW+Net ``trainImageList.txt`` or MTFL.
    landmarks: str | None = None
    #: ``auto`` detects the format from the file.
    landmarks_format: LandmarksFormat = "auto"
    #: A held-out landmark list (same formats, read with ``landmarks_format``) that the pipeline's
    #: evaluation scores O-Net's landmarks on, e.g. MTFL's AFLW crops (``new_testing.txt``).
    landmarks_test: str | None = None
    #: Share of the landmark faces (of ``landmarks``) held out of every sample set, by image: the
    #: landmark validation split on which landmark choices (crop framing, rotation, mirror
    #: averaging, epochs) are made, so ``landmarks_test`` is scored only once, at the end.
    landmarks_val_fraction: float = 0.0
    #: Folder holding ``FDDB-folds/`` and ``originalPics/``.
    fddb_root: str | None = None
    #: Share of WIDER images (whole images, never single faces) held out for validation.
    val_fraction: float = 0.1
    #: Seed of the validation split, fixed so that every stage and eval agree on it.
    val_seed: int = 0
    #: Use only the first N images (0 = all); handy for quick trials.
    max_images: int = 0


@dataclass
class SampleRatio:
    """Relative share of each sample type in a sample set (paper: 3:1:1:2)."""

    negative: float = 3.0
    positive: float = 1.0
    part: float = 1.0
    landmark: float = 2.0


@dataclass
class SamplingConfig:
    """How training crops are cut and labelled (paper section 2.3)."""

    #: Crops with IoU below this to every face are negatives.
    neg_iou: float = 0.3
    #: Crops with IoU in [part_iou, pos_iou] to a face are part faces.
    part_iou: float = 0.4
    #: Crops with IoU above this to a face are positives.
    pos_iou: float = 0.65
    #: Faces smaller than this (pixels, shorter side) give no positives or part faces.
    min_face_size: float = 20.0
    #: Random square crops per image, kept when they are negatives.
    random_negatives_per_image: int = 50
    #: Crops shifted near each face, kept when they are negatives (hard negatives).
    negatives_per_face: int = 5
    #: Shifted and scaled crops tried per face for positives and part faces.
    crops_per_face: int = 20
    #: Crops per landmark face (each randomly mirrored).
    landmark_crops_per_face: int = 10
    #: Landmark crops are turned by a random angle, uniform in +/- this many degrees, about their
    #: centre (0 = upright crops, as the paper).  Upright landmark sets such as LFW leave the
    #: landmark head blind to tilted heads, which test sets such as AFLW are full of.
    landmark_max_rotation: float = 0.0
    #: Face boxes of landmark faces: auto (derived from the points for MTFL, whose box is the whole
    #: crop, and aligned CelebA; the file's boxes otherwise), file, or derived.
    landmark_boxes: LandmarkBoxes = "auto"
    #: Relative share of each sample type in a sample set (paper: 3:1:1:2).
    ratio: SampleRatio = field(default_factory=SampleRatio)
    #: The shares of the mined R-Net and O-Net sets, when they differ from ``ratio`` (null: ``ratio``;
    #: shares not given take SampleRatio's defaults).  E.g. an R-Net that sees fewer negatives
    #: per positive rejects fewer windows that only partly cover a face.
    ratio_rnet: SampleRatio | None = None
    ratio_onet: SampleRatio | None = None
    #: Target size of the whole sample set; 0 = as many as the scarcest type allows.
    total: int = 0
    #: Worker processes (0 = automatic: by the amount of work, at most one per CPU core).  Output
    #: does not depend on it.
    workers: int = 0
    seed: int = 0
    #: Mining (R-Net, O-Net sets) also adds the IoU-banded crops of P-Net sampling around each
    #: face as a top-up under the mined candidates (logged, with the share of each type that came
    #: from detections, in the sample set's manifest).  Off: the paper's rule, each stage learns
    #: only from what the earlier stages detect.
    mining_base_crops: bool = False
    #: Face-score thresholds of the earlier stages while mining (P-Net for R-Net samples, P and R
    #: for O-Net samples); empty: ``detection.thresholds``.  Lower than at detection time, as the
    #: reference trainers do (0.3 / 0.1), so the next stage sees the borderline candidates too.
    mining_thresholds: list[float] = field(default_factory=lambda: [0.3, 0.1])
    #: At most this many mined negatives per image, the highest-scoring (hardest) first, so a few
    #: crowded images cannot supply most of the negatives (0 = no cap).
    mining_negatives_per_image: int = 60
    #: Mining also runs the earlier stages on each image's mirror image and keeps their labelled
    #: candidates too: about twice the mined faces from the same images (the candidates of a
    #: mirrored pyramid fall elsewhere on a face, so they are new crops, not flips of old ones).
    #: Off: the paper's rule.
    mining_mirror: bool = False
    #: Target sizes of the mined R-Net and O-Net sets; 0 = the same rule as ``total``.  O-Net
    #: trains about 100x slower per sample than P-Net, so its set is often kept smaller.
    total_rnet: int = 0
    total_onet: int = 0
    #: Samples per shard file.
    shard_size: int = 100_000


def stage_ratio(sampling: SamplingConfig, stage: str) -> SampleRatio:
    """The sample-type shares of ``stage``'s set: ``ratio_rnet`` / ``ratio_onet`` where given."""
    own = {"rnet": sampling.ratio_rnet, "onet": sampling.ratio_onet}.get(stage)
    return own if own is not None else sampling.ratio


@dataclass
class StageTrainConfig:
    """Training settings of one network."""

    #: Loss weights α (paper: 1/0.5/0.5 for P and R, 1/0.5/1 for O).
    alpha_det: float = 1.0
    alpha_box: float = 0.5
    alpha_landmark: float = 0.5
    #: Online hard example mining: share of classification losses kept per batch (1.0 = off).
    ohem_keep_ratio: float = 0.7
    #: Landmark faces feed the face/non-face loss too, as faces (off: the paper's β, landmark faces
    #: feed the landmark loss only).  More faces for a net whose mined set has few.
    landmark_faces_classify: bool = False
    #: Part faces feed the face/non-face loss too, with a soft target rising from 0 at
    #: ``sampling.neg_iou`` to 1 at ``sampling.pos_iou`` with their IoU (off: the paper's β).  So
    #: the net learns to score a box on part of a face below one on the whole face.
    part_faces_classify: bool = False
    #: Share of training crops shown at a lower resolution first: shrunk to a random side between
    #: a quarter of the input size and the input size, then enlarged back (blurred, small and
    #: upscaled faces look like that to R-Net and O-Net).  0 = off.
    low_resolution_prob: float = 0.0
    optimizer: Optimizer = "adam"
    lr: float = 0.001
    momentum: float = 0.9
    weight_decay: float = 0.0
    #: Dropout on the fully connected layer of R-Net or O-Net during training (0 = off; P-Net has
    #: no such layer).  Inference and checkpoints are unchanged.
    dropout: float = 0.0
    #: Keep an exponential moving average of the weights (decay per optimizer step; 0 = off, e.g.
    #: 0.999 averages over about the last 1,000 steps).  Validation, the detection measure and the
    #: saved weights use the average; training steps use the raw weights.
    ema_decay: float = 0.0
    lr_schedule: LrSchedule = "cosine"
    #: Epochs at which the step schedule multiplies the rate by lr_gamma.
    lr_milestones: list[int] = field(default_factory=list)
    lr_gamma: float = 0.1
    warmup_epochs: float = 0.0
    epochs: int = 10
    batch_size: int = 512
    #: Share of samples held out for validation (by source image where the manifest says it).
    val_fraction: float = 0.05
    #: auto, cpu, cuda or cuda:N (under torchrun, counted from each rank's own GPU).
    device: str = "auto"
    #: Mixed precision (fp16 only on CUDA).
    amp: Amp = "off"
    seed: int = 0
    #: Random horizontal flips (landmarks swapped) and colour jitter, done on the device.
    augment: bool = True
    #: Keep the whole sample set on the device when it fits in this many GiB (0 = never).
    resident_max_gib: float = 4.0
    #: Which epoch's weights become ``<stage>.pt``: the lowest validation ``loss`` (the α-weighted
    #: sum), or the lowest of one part (``loss_det``, ``loss_box``, ``loss_landmark``), or ``last``.
    #: Late in a cosine schedule the box and landmark errors still fall while the classification
    #: cross-entropy creeps up from over-confidence (accuracy flat), so ``loss`` can pick an epoch
    #: whose landmarks are clearly worse; ``last`` keeps the end of the schedule.
    best_by: BestBy = "loss"
    #: A later epoch whose ``best_by`` measure is within this much of the kept epoch's (and of the
    #: best measure so far) replaces it when its validation ``best_by_tie_break`` is lower: epochs
    #: that rank the same within the noise of the measure are told apart by what it does not see
    #: (0 = the measure alone).  With ``best_by: detection`` it is in units of recall or AP.
    best_by_tolerance: float = 0.0
    #: The validation loss that breaks those ties (O-Net's landmarks: ``loss_landmark``).
    best_by_tie_break: TieBreak = "loss_landmark"
    #: Save last.pt every N optimizer steps as well as at each epoch end (0 = epoch ends only).
    checkpoint_every_steps: int = 0
    #: Intra-op CPU threads (0 = torch's default).
    threads: int = 0
    #: Write step-level TensorBoard scalars (losses, lr, samples/s) every N optimizer steps (0 = off).
    log_every_steps: int = 50


def _stage(**overrides: Any) -> Any:
    return field(default_factory=lambda: StageTrainConfig(**overrides))


@dataclass
class TrainConfig:
    # P-Net: tuned on a WIDER-subset sample set (issue 4): Adam 0.005 with batches of 256 reaches
    # ~94% pos/neg validation accuracy in 8 epochs where 0.001 x 512 stays near 92.6%.
    pnet: StageTrainConfig = _stage(alpha_landmark=0.5, lr=0.005, batch_size=256)
    rnet: StageTrainConfig = _stage(alpha_landmark=0.5)
    onet: StageTrainConfig = _stage(alpha_landmark=1.0, batch_size=256)


@dataclass
class DetectionConfig:
    """The cascade at inference (paper section 2 and the reference implementation)."""

    #: Smallest face searched for (pixels, at least 4); below 12 (P-Net's window) the pyramid
    #: starts by upsampling the image by 12 / min_face_size, as the reference does.
    min_face_size: float = 20.0
    scale_factor: float = 0.709
    #: Face-score thresholds of P-Net, R-Net and O-Net.
    thresholds: list[float] = field(default_factory=lambda: [0.6, 0.7, 0.7])
    #: P-Net's NMS overlap within one pyramid scale, then across the scales.
    nms_pnet_scale: float = 0.5
    nms_pnet_all: float = 0.7
    nms_rnet: float = 0.7
    #: R-Net's NMS on the boxes after its box regression instead of before (the reference's order).
    #: Regression moves the boxes of one face onto it, so more of them merge: fewer second boxes
    #: on a face rank among the faces.
    rnet_nms_after_regression: bool = False
    #: O-Net's final NMS uses the 'Min' overlap (intersection over the smaller box).
    nms_onet: float = 0.7
    #: auto, cpu, cuda or cuda:N.
    device: str = "auto"
    #: Images per batch in batched detection.
    batch_size: int = 16
    #: On the CPU, pieces of one detection (pyramid levels, blocks of R-Net / O-Net crops) run this
    #: many at a time, each on one thread; 0: as many as torch's intra-op threads.  1: one at a time,
    #: each op on torch's threads (the small ops of the cascade barely gain from that).
    cpu_workers: int = 0
    #: P-Net runs once over all pyramid levels of an image, packed into one canvas
    #: (:mod:`mtcnn_train.detection.packing`), instead of once per level; the same outputs.  The
    #: PyTorch backend only (ONNX nets keep one call per level).  Pays
    #: where each call costs (a GPU); on the CPU it is no faster (docs/BENCHMARKS.md).  The canvas
    #: holds every level at once: about 2.5x the pixels of the largest level.
    packed_pyramid: bool = False
    #: How R-Net and O-Net crops treat boxes that stick out of the image: ``zero`` reads the
    #: outside as black pixels (the original MTCNN and our training crops), ``clip`` crops only
    #: the visible part and stretches it (facenet-pytorch; use it for parity with that package).
    crop_border: CropBorder = "zero"
    #: O-Net also reads each face mirrored and averages the two readings of the landmarks
    #: (test-time flip): steadier points for twice O-Net's cost; scores and boxes are unchanged.
    landmarks_mirror_average: bool = False
    #: O-Net also reads each face mirrored and averages the two readings of the face logits and
    #: the box offsets (test-time flip for scores and boxes; with ``landmarks_mirror_average`` the
    #: mirrored pass is shared).
    faces_mirror_average: bool = False
    #: The final score of a face is ``p_O ** (1 - w) * p_R ** w`` with this ``w``, R-Net's and
    #: O-Net's probabilities weighed together (a geometric mean at 0.5); O-Net's threshold and the
    #: final NMS apply to that score.  0: O-Net's alone, as the paper and the reference.
    rnet_score_weight: float = 0.0


@dataclass
class EvalConfig:
    #: FDDB true positive: region overlap above this.
    fddb_overlap: float = 0.5
    #: Convert detected boxes to ellipses before FDDB scoring (off = official rectangle scoring).
    box_to_ellipse: bool = False
    #: False-positive counts at which the true positive rate is reported.
    fp_points: list[int] = field(default_factory=lambda: [100, 500, 1000, 2000])
    wider_iou: float = 0.5
    wider_thresholds: int = 1000


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    detection: DetectionConfig = field(default_factory=DetectionConfig)
    evaluation: EvalConfig = field(default_factory=EvalConfig)
    #: Folder the config was loaded from; relative data paths resolve against it.
    base_dir: str = "."

    def stage(self, name: str) -> StageTrainConfig:
        return getattr(self.train, name)

    def resolve_path(self, value: str | None) -> Path | None:
        """A data path from the config, made absolute against the config file's folder."""
        if value is None:
            return None
        path = Path(value).expanduser()
        return path if path.is_absolute() else (Path(self.base_dir) / path).resolve()

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out.pop("base_dir")
        return out


# --------------------------------------------------------------------------------------------
# Loading


class _Locations:
    """Maps a dotted key path to the YAML line it was written on."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.lines: dict[str, int] = {}
        #: Keys set by ``--set``, mapped to the override text, so errors point at the override.
        self.overrides: dict[str, str] = {}

    def where(self, key: str) -> str:
        for prefix, text in self.overrides.items():
            if key == prefix or key.startswith(prefix + "."):
                return f"--set {text}"
        line = self.lines.get(key)
        return f"{self.source}:{line}" if line else self.source


class _PlainNumbersLoader(yaml.SafeLoader):
    """YAML 1.1 as PyYAML reads it, except numbers: only plain decimals are numbers.

    PyYAML takes ``0x10`` for 16, ``010`` for 8, ``0b11`` for 3, ``1_000`` for 1000 and ``1:30``
    for 90, so a typo or a value meant as text silently becomes another number.  Here those stay
    text (refused where the key wants a number, kept where it wants text), and ``1e-3``, which
    PyYAML leaves as text, is the number it looks like.
    """


_NUMBER_TAGS = ("tag:yaml.org,2002:int", "tag:yaml.org,2002:float")
_PlainNumbersLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag not in _NUMBER_TAGS]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}
_PlainNumbersLoader.add_implicit_resolver(
    "tag:yaml.org,2002:int", re.compile(r"^[-+]?(?:0|[1-9][0-9]*)$"), list("-+0123456789"))
_PlainNumbersLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^(?:[-+]?(?:[0-9]+\.[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?|[-+]?[0-9]+[eE][-+]?[0-9]+"
               r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"),
    list("-+0123456789."))


def _record_lines(node: yaml.Node, prefix: str, locations: _Locations) -> None:
    """Note the line of every key; a key written twice in one mapping is an error naming both
    lines (YAML loaders silently keep the last one)."""
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        for key_node, value_node in node.value:
            key = f"{prefix}{key_node.value}"
            line = key_node.start_mark.line + 1
            if key_node.value in seen:
                raise ConfigError(f"{locations.source}:{line}: key '{key}' is set twice (also on line "
                                  f"{seen[key_node.value]}); keep one")
            seen[key_node.value] = line
            locations.lines[key] = line
            _record_lines(value_node, key + ".", locations)


def _parse_yaml(text: str, source: str, locations: _Locations) -> dict[str, Any]:
    try:
        node = yaml.compose(text, Loader=_PlainNumbersLoader)
        data = yaml.load(text, Loader=_PlainNumbersLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark is not None else source
        problem = getattr(exc, "problem", None) or first_line(exc)
        raise ConfigError(f"{where}: invalid YAML: {problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: a config must be a mapping of sections, got {type(data).__name__}")
    if node is not None:
        _record_lines(node, "", locations)
    return data


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp)).replace("typing.", "")


def _one_of(choices: tuple[str, ...]) -> str:
    return f"{', '.join(choices[:-1])} or {choices[-1]}" if len(choices) > 1 else choices[0]


def _coerce(value: Any, tp: Any, key: str, where: str) -> Any:
    """Check (and gently coerce: int -> float) a YAML value against a field type."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key, where)
            except ConfigError as exc:
                errors.append(exc)
        raise errors[0]
    if origin is Literal:
        choices = typing.get_args(tp)
        if value is False and "off" in choices:
            value = "off"  # YAML 1.1 reads a bare `off` as false: `amp: off` means the word
        text = _coerce(value, str, key, where)
        if text not in choices:
            raise ConfigError(f"{where}: {key}: must be {_one_of(choices)}, got {text!r}")
        return text
    if origin is list:
        (item_type,) = typing.get_args(tp)
        if not isinstance(value, list):
            raise ConfigError(f"{where}: {key}: expected a list, got {value!r}")
        return [_coerce(v, item_type, f"{key}[{i}]", where) for i, v in enumerate(value)]
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: {key}: expected a number, got {value!r}")
        value = float(value)
        if value != value or value in (float("inf"), float("-inf")):
            raise ConfigError(f"{where}: {key}: must be finite, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise ConfigError(f"{where}: {key}: expected a whole number, got {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: {key}: expected true or false, got {value!r}")
        return value
    if tp is str:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        if not isinstance(value, str):
            raise ConfigError(f"{where}: {key}: expected text, got {value!r}")
        return value
    raise ConfigError(f"{where}: {key}: unsupported type {_type_name(tp)}")


def _optional_dataclass(tp: Any) -> type | None:
    """The dataclass of a ``SomeDataclass | None`` field, else None."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        classes = [arg for arg in typing.get_args(tp) if dataclasses.is_dataclass(arg)]
        if len(classes) == 1:
            return classes[0]
    return None


def _build(cls: type, data: Any, prefix: str, locations: _Locations, base: Any = None) -> Any:
    """Build dataclass ``cls`` from a mapping, starting from ``base`` (or the defaults)."""
    where = locations.where(prefix.rstrip(".")) if prefix else locations.source
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: {prefix.rstrip('.') or 'config'}: expected a mapping, got {data!r}")
    obj = base if base is not None else cls()
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls) if f.name != "base_dir"}
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        if key not in names:
            close = ", ".join(sorted(names))
            raise ConfigError(f"{locations.where(dotted)}: unknown key '{dotted}' (known here: {close})")
        tp = hints[key]
        nested = _optional_dataclass(tp) if value is not None else None
        if dataclasses.is_dataclass(tp):
            setattr(obj, key, _build(tp, value, dotted + ".", locations, getattr(obj, key)))
        elif nested is not None:  # e.g. sampling.ratio_rnet: null until given, then its own defaults
            setattr(obj, key, _build(nested, value, dotted + ".", locations, getattr(obj, key)))
        else:
            setattr(obj, key, _coerce(value, tp, dotted, locations.where(dotted)))
    return obj


def _check(cond: bool, locations: _Locations, key: str, message: str) -> None:
    if not cond:
        raise ConfigError(f"{locations.where(key)}: {key}: {message}")


def _check_device(value: str, locations: _Locations, key: str) -> None:
    _check(re.fullmatch(r"auto|cpu|cuda(:[0-9]+)?", value) is not None, locations, key,
           f"must be auto, cpu or cuda[:N], got {value!r}")


def _in_unit(value: float) -> bool:
    return 0.0 <= value <= 1.0


def validate(cfg: Config, locations: _Locations | None = None) -> None:
    """Reject impossible values with one clear line."""
    loc = locations or _Locations("config")
    s = cfg.sampling
    for key in ("neg_iou", "part_iou", "pos_iou"):
        _check(_in_unit(getattr(s, key)), loc, f"sampling.{key}", f"an IoU must lie in [0, 1], got {getattr(s, key)}")
    _check(s.neg_iou <= s.part_iou, loc, "sampling.neg_iou",
           f"the negative band ({s.neg_iou}) must lie below the part band ({s.part_iou})")
    _check(s.part_iou < s.pos_iou, loc, "sampling.part_iou",
           f"the part band's lower edge ({s.part_iou}) must lie below the positive band ({s.pos_iou})")
    _check(s.min_face_size >= 1, loc, "sampling.min_face_size", f"must be at least 1 pixel, got {s.min_face_size}")
    for key in ("random_negatives_per_image", "negatives_per_face", "crops_per_face",
                "landmark_crops_per_face", "total", "total_rnet", "total_onet", "workers",
                "mining_negatives_per_image"):
        _check(getattr(s, key) >= 0, loc, f"sampling.{key}", f"must not be negative, got {getattr(s, key)}")
    _check(s.shard_size >= 1, loc, "sampling.shard_size", f"must be at least 1, got {s.shard_size}")
    _check(len(s.mining_thresholds) in (0, 2) and all(_in_unit(t) for t in s.mining_thresholds), loc,
           "sampling.mining_thresholds",
           f"must be empty or two face-score thresholds in [0, 1] (P-Net, R-Net), got {s.mining_thresholds}")
    _check(0 <= s.landmark_max_rotation <= 90, loc, "sampling.landmark_max_rotation",
           f"must lie in [0, 90] degrees, got {s.landmark_max_rotation}")
    for name in ("ratio", "ratio_rnet", "ratio_onet"):
        ratio = getattr(s, name)
        if ratio is None:
            continue
        for key in ("negative", "positive", "part", "landmark"):
            _check(getattr(ratio, key) >= 0, loc, f"sampling.{name}.{key}", "a share must not be negative")
        _check(sum(dataclasses.astuple(ratio)) > 0, loc, f"sampling.{name}", "at least one share must be positive")

    d = cfg.data
    _check(0.0 <= d.val_fraction < 1.0, loc, "data.val_fraction", f"must lie in [0, 1), got {d.val_fraction}")
    _check(0.0 <= d.landmarks_val_fraction < 1.0, loc, "data.landmarks_val_fraction",
           f"must lie in [0, 1), got {d.landmarks_val_fraction}")
    _check(d.max_images >= 0, loc, "data.max_images", f"must not be negative, got {d.max_images}")
    from mtcnn_train.datasets.formats import BOX_FORMATS

    _check(d.boxes_format in ("auto",) + BOX_FORMATS, loc, "data.boxes_format",
           f"must be auto or one of {', '.join(BOX_FORMATS)}, got {d.boxes_format!r}")
    _check(len(d.keypoint_names) in (0, 5), loc, "data.keypoint_names",
           f"needs the 5 keypoint names in our order, got {len(d.keypoint_names)}")

    for stage in STAGES:
        t = cfg.stage(stage)
        p = f"train.{stage}"
        for key in ("alpha_det", "alpha_box", "alpha_landmark"):
            _check(getattr(t, key) >= 0, loc, f"{p}.{key}", f"a loss weight must not be negative, got {getattr(t, key)}")
        _check(0.0 < t.ohem_keep_ratio <= 1.0, loc, f"{p}.ohem_keep_ratio", f"must lie in (0, 1], got {t.ohem_keep_ratio}")
        _check(t.lr > 0, loc, f"{p}.lr", f"must be positive, got {t.lr}")
        _check(t.weight_decay >= 0, loc, f"{p}.weight_decay", f"must not be negative, got {t.weight_decay}")
        _check(0.0 <= t.dropout < 1.0, loc, f"{p}.dropout", f"must lie in [0, 1), got {t.dropout}")
        _check(0.0 <= t.low_resolution_prob <= 1.0, loc, f"{p}.low_resolution_prob",
               f"must lie in [0, 1], got {t.low_resolution_prob}")
        _check(t.dropout == 0 or stage != "pnet", loc, f"{p}.dropout",
               "P-Net is fully convolutional: it has no fully connected layer to drop out")
        _check(0.0 <= t.ema_decay < 1.0, loc, f"{p}.ema_decay", f"must lie in [0, 1), got {t.ema_decay}")
        _check(t.epochs >= 1, loc, f"{p}.epochs", f"must be at least 1, got {t.epochs}")
        _check(t.batch_size >= 1, loc, f"{p}.batch_size", f"must be at least 1, got {t.batch_size}")
        _check(0.0 <= t.val_fraction < 1.0, loc, f"{p}.val_fraction", f"must lie in [0, 1), got {t.val_fraction}")
        _check_device(t.device, loc, f"{p}.device")
        _check(t.warmup_epochs >= 0, loc, f"{p}.warmup_epochs", "must not be negative")
        _check(t.checkpoint_every_steps >= 0, loc, f"{p}.checkpoint_every_steps", "must not be negative")
        _check(t.log_every_steps >= 0, loc, f"{p}.log_every_steps", "must not be negative")
        _check(0.0 <= t.best_by_tolerance < 1.0, loc, f"{p}.best_by_tolerance",
               f"must lie in [0, 1), got {t.best_by_tolerance}")
        _check(t.best_by_tolerance == 0 or t.best_by != "last", loc, f"{p}.best_by_tolerance",
               "has no measure to be tolerant of with best_by: last")

    det = cfg.detection
    _check(det.min_face_size >= MIN_DETECTABLE_FACE, loc, "detection.min_face_size",
           f"must be at least {MIN_DETECTABLE_FACE} px (below P-Net's 12 px window the image is upsampled by "
           f"12 / min_face_size), got {det.min_face_size}")
    _check(0.0 < det.scale_factor < 1.0, loc, "detection.scale_factor", f"must lie in (0, 1), got {det.scale_factor}")
    _check(len(det.thresholds) == 3, loc, "detection.thresholds", f"needs 3 values (P, R, O), got {len(det.thresholds)}")
    _check(all(_in_unit(t) for t in det.thresholds), loc, "detection.thresholds", "each must lie in [0, 1]")
    for key in ("nms_pnet_scale", "nms_pnet_all", "nms_rnet", "nms_onet"):
        _check(_in_unit(getattr(det, key)), loc, f"detection.{key}", f"an overlap must lie in [0, 1], got {getattr(det, key)}")
    _check(0.0 <= det.rnet_score_weight < 1.0, loc, "detection.rnet_score_weight",
           f"must lie in [0, 1) (1 would ignore O-Net's score), got {det.rnet_score_weight}")
    _check(det.batch_size >= 1, loc, "detection.batch_size", "must be at least 1")
    _check(det.cpu_workers >= 0, loc, "detection.cpu_workers", f"must be 0 (automatic) or more, got {det.cpu_workers}")
    _check_device(det.device, loc, "detection.device")

    ev = cfg.evaluation
    _check(_in_unit(ev.fddb_overlap), loc, "evaluation.fddb_overlap", "must lie in [0, 1]")
    _check(_in_unit(ev.wider_iou), loc, "evaluation.wider_iou", "must lie in [0, 1]")
    _check(ev.wider_thresholds >= 1, loc, "evaluation.wider_thresholds", "must be at least 1")
    _check(all(p > 0 for p in ev.fp_points), loc, "evaluation.fp_points", "false-positive counts must be positive")


def parse_override(text: str) -> tuple[str, Any]:
    """Split ``section.key=value``; the value is parsed as YAML (``0.5``, ``true``, ``[1, 2]``)."""
    if "=" not in text:
        raise ConfigError(f"--set {text}: expected section.key=value")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key or "." not in key:
        raise ConfigError(f"--set {text}: expected section.key=value")
    try:
        value = yaml.load(raw, Loader=_PlainNumbersLoader) if raw.strip() else ""  # noqa: S506 - safe subclass
    except yaml.YAMLError:
        value = raw
    return key, value


def _nest(key: str, value: Any) -> dict[str, Any]:
    out: Any = value
    for part in reversed(key.split(".")):
        out = {part: out}
    return out


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Load, override and validate a config.  ``path=None`` gives the paper defaults."""
    cfg = Config()
    locations = _Locations("defaults")
    if path is not None:
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ConfigError(f"{path}: config file not found") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path}: cannot read config: {exc}") from None
        locations = _Locations(str(path))
        data = _parse_yaml(text, str(path), locations)
        cfg = _build(Config, data, "", locations, cfg)
        cfg.base_dir = str(path.resolve().parent)
    for text in overrides:
        key, value = parse_override(text)
        override_locations = _Locations(f"--set {text}")
        cfg = _build(Config, _nest(key, value), "", override_locations, cfg)
        locations.overrides[key] = text
    validate(cfg, locations)
    return cfg


def config_from_dict(data: dict[str, Any], source: str = "config") -> Config:
    """Rebuild a config saved with :meth:`Config.to_dict` (e.g. from a checkpoint or manifest)."""
    locations = _Locations(source)
    cfg = _build(Config, data, "", locations, Config())
    validate(cfg, locations)
    return cfg


def save_config(cfg: Config, path: str | Path) -> None:
    """Write the resolved config as YAML, atomically, beside a command's output."""
    from mtcnn_train.io import atomic_write_text

    atomic_write_text(path, yaml.safe_dump(cfg.to_dict(), sort_keys=False))


# --------------------------------------------------------------------------------------------
# The documented defaults file (configs/default.yaml), generated from the dataclasses


_DEFAULTS_HEADER = """\
# The paper's settings (Zhang et al. 2016, arXiv 1604.02878), as the built-in defaults.  Every key
# is optional; a key left out keeps the value shown here.  Paths are relative to this file's folder.
#
# Generated from the dataclasses in mtcnn_train/config.py (the one place the defaults are stated):
#   python -m mtcnn_train.config > mtcnn_train/configs/default.yaml
# tests/core/test_config.py fails when this file and the dataclasses disagree.
"""


def _field_comments(cls: type) -> dict[str, str]:
    """The ``#:`` comment lines above each field of dataclass ``cls``, joined into one text."""
    comments: dict[str, str] = {}
    pending: list[str] = []
    for line in inspect.getsource(cls).splitlines()[1:]:
        text = line.strip()
        match = re.match(r"(\w+)\s*:", text)
        if text.startswith("#:"):
            pending.append(text[2:].strip())
        elif match and not text.startswith(("def ", "class ", "#")):
            comments[match.group(1)] = " ".join(pending)
            pending = []
        elif not text.startswith("#"):
            pending = []
    return comments


def _yaml_value(value: Any) -> str:
    return yaml.safe_dump(value, default_flow_style=True, width=10_000).removesuffix("\n...\n").strip()


def _emit_defaults(obj: Any, indent: int, lines: list[str], documented: bool) -> None:
    cls = type(obj)
    comments = _field_comments(cls)
    hints = typing.get_type_hints(cls)
    pad = "  " * indent
    for f in dataclasses.fields(obj):
        if f.name == "base_dir":
            continue
        value = getattr(obj, f.name)
        doc = comments.get(f.name, "")
        if typing.get_origin(hints[f.name]) is Literal:
            doc = f"{doc} One of: {', '.join(typing.get_args(hints[f.name]))}.".strip()
        if doc and documented:
            lines += textwrap.wrap(doc, 100, initial_indent=pad + "# ", subsequent_indent=pad + "# ")
        if dataclasses.is_dataclass(value):
            lines.append(f"{pad}{f.name}:")
            # The three stages share one set of fields: document them once, under the first.
            _emit_defaults(value, indent + 1, lines, documented and not (cls is TrainConfig and f.name != STAGES[0]))
            if indent == 0:
                lines.append("")
        else:
            lines.append(f"{pad}{f.name}: {_yaml_value(value)}")


def defaults_yaml() -> str:
    """The text of ``configs/default.yaml``: every key with its built-in default and its comment."""
    lines: list[str] = []
    _emit_defaults(Config(), 0, lines, documented=True)
    return _DEFAULTS_HEADER + "\n" + "\n".join(lines).rstrip() + "\n"


if __name__ == "__main__":
    import sys

    sys.stdout.write(defaults_yaml())
