"""The one registry of annotation formats: every command that takes a dataset reads it here.

``data check``, ``data convert``, ``gen-samples`` (and so mining and ``pipeline``), ``eval wider``
and the pipeline's validation scoring all call :func:`read_dataset` with a format name, or
:func:`detect_format` to tell the format from the path.  Box sets (``wider``, ``coco``, ``yolo``,
``voc``, ``fddb``) give whole images with all their faces; landmark lists give one face per
record.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from mtcnn_train.datasets.labels import LabelFilter
from mtcnn_train.datasets.records import FaceRecord
from mtcnn_train.errors import AnnotationError, UserError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


@dataclass(frozen=True)
class ReadOptions:
    """Reader settings beyond path and images folder (``data.classes`` etc. in the config)."""

    classes: tuple[str, ...] = ()
    ignore_classes: tuple[str, ...] = ()
    keypoint_names: tuple[str, ...] = ()
    #: FDDB: the folds to read (None: every fold whose ellipse file is there).
    folds: tuple[int, ...] | None = None

    @classmethod
    def from_config(cls, cfg: Any) -> "ReadOptions":
        """The settings of a :class:`~mtcnn_train.config.Config`'s ``data`` section."""
        data = cfg.data
        return cls(tuple(data.classes), tuple(data.ignore_classes), tuple(data.keypoint_names))

    @property
    def labels(self) -> LabelFilter:
        return LabelFilter.of(self.classes, self.ignore_classes)


Reader = Callable[[Path, "Path | None", ReadOptions], list[FaceRecord]]


@dataclass(frozen=True)
class DatasetFormat:
    name: str
    #: ``boxes``: whole images with every face; ``landmarks``: one face per record.
    kind: str
    #: What PATH is, for help texts and errors.
    path: str
    read: Reader


def _read_wider(path: Path, images_root: Path | None, options: ReadOptions) -> list[FaceRecord]:
    from mtcnn_train.datasets import wider

    if path.is_dir():
        path, default_root = wider.wider_paths(path)
    else:
        official = re.fullmatch(r"wider_face_(\w+)_bbx_gt\.txt", path.name)
        default_root = wider.wider_paths(path.parent.parent, official.group(1))[1] if official else path.parent
    return wider.read_wider(path, images_root or default_root)


def _read_fddb(path: Path, images_root: Path | None, options: ReadOptions) -> list[FaceRecord]:
    from mtcnn_train.datasets import fddb

    if images_root is not None:
        raise UserError("--images does not apply to fddb: images are read from FDDB_ROOT/originalPics")
    folds = options.folds if options.folds is not None else fddb.present_folds(path)
    return fddb.read_fddb(path, folds)


def _read_coco(path: Path, images_root: Path | None, options: ReadOptions) -> list[FaceRecord]:
    from mtcnn_train.datasets.coco import read_coco

    return read_coco(path, images_root, labels=options.labels, keypoint_names=options.keypoint_names)


def _read_yolo(path: Path, images_root: Path | None, options: ReadOptions) -> list[FaceRecord]:
    from mtcnn_train.datasets.yolo import read_yolo

    return read_yolo(path, images_root, labels=options.labels)


def _read_voc(path: Path, images_root: Path | None, options: ReadOptions) -> list[FaceRecord]:
    from mtcnn_train.datasets.voc import read_voc

    return read_voc(path, images_root, labels=options.labels)


def _landmark_reader(fmt: str) -> Reader:
    def read(path: Path, images_root: Path | None, options: ReadOptions) -> list[FaceRecord]:
        from mtcnn_train.datasets.landmarks import read_landmarks

        return read_landmarks(path, images_root, fmt)

    return read


#: Readers are imported on demand: the FDDB one pulls in torch (via geometry), which the others
#: do not need, and ``data check`` should answer fast.
FORMATS: dict[str, DatasetFormat] = {f.name: f for f in (
    DatasetFormat("wider", "boxes", "the *_bbx_gt.txt file or the WIDER root", _read_wider),
    DatasetFormat("coco", "boxes", "the COCO .json file", _read_coco),
    DatasetFormat("yolo", "boxes", "a folder with images/ and labels/, an image list .txt or a data .yaml",
                  _read_yolo),
    DatasetFormat("voc", "boxes", "a folder of Pascal VOC .xml files (or a VOC root with Annotations/)", _read_voc),
    DatasetFormat("fddb", "boxes", "the FDDB root (FDDB-folds/, originalPics/)", _read_fddb),
    *(DatasetFormat(name, "landmarks", "the landmark list", _landmark_reader(name))
      for name in ("celeba", "celeba-aligned", "lfw-net", "mtfl")),
)}
DATASET_FORMATS = tuple(FORMATS)
BOX_FORMATS = tuple(name for name, f in FORMATS.items() if f.kind == "boxes")
LANDMARK_FORMATS = tuple(name for name, f in FORMATS.items() if f.kind == "landmarks")


def _first_lines(path: Path, count: int) -> list[str]:
    from mtcnn_train.datasets.annotation_text import read_text_lines

    return [line for line in read_text_lines(path) if line.strip()][:count]


def _looks_like_image_list(lines: list[str]) -> bool:
    return bool(lines) and all(len(line.split()) == 1 and line.strip().lower().endswith(IMAGE_SUFFIXES)
                               for line in lines)


def detect_format(path: str | Path) -> str:
    """The format of a dataset path, from its name, its folder contents or its first lines."""
    from mtcnn_train.datasets.annotation_text import is_number

    path = Path(path)
    if path.is_dir():
        if (path / "FDDB-folds").is_dir():
            return "fddb"
        if (path / "wider_face_split").is_dir():
            return "wider"
        if (path / "Annotations").is_dir() or next(path.glob("*.xml"), None) is not None:
            return "voc"
        if (path / "labels").is_dir() or path.name in ("labels", "images") or next(path.glob("*.txt"), None):
            return "yolo"
        raise UserError(f"{path}: cannot tell the dataset format of this folder; pass --format")
    if not path.is_file():
        raise UserError(f"{path}: not found")
    suffix = path.suffix.lower()
    if suffix == ".json":
        return "coco"
    if suffix in (".yaml", ".yml"):
        return "yolo"
    if suffix == ".xml":
        raise UserError(f"{path}: a Pascal VOC set is the folder of .xml files; pass the folder")
    if re.fullmatch(r"wider_face_\w+_bbx_gt\.txt", path.name):
        return "wider"
    head = _first_lines(path, 20)
    if _looks_like_image_list(head):
        return "yolo"
    if len(head) >= 2 and not is_number(head[0].split()[0]) and len(head[0].split()) == 1 \
            and head[1].strip().isdigit():
        return "wider"  # an image name, then a face count
    from mtcnn_train.datasets.landmarks import detect_landmark_format

    try:
        return detect_landmark_format(path)
    except AnnotationError as exc:  # name the line and what it held, so the user can tell what is off
        from mtcnn_train.datasets.annotation_text import read_text_lines

        lines = read_text_lines(path)
        held = f" from {len(lines[exc.line - 1].split())} fields" if exc.line else f" ({exc.reason})"
        raise AnnotationError(path, exc.line, f"cannot tell the dataset format{held}: not the layout of a WIDER "
                                              "list, an image list, CelebA, LFW+Net or MTFL; pass --format") from None


def resolve_format(fmt: str, path: str | Path) -> str:
    if fmt == "auto":
        return detect_format(path)
    if fmt not in FORMATS:
        raise UserError(f"unknown dataset format {fmt!r}; expected auto or one of {', '.join(DATASET_FORMATS)}")
    return fmt


def read_dataset(fmt: str, path: str | Path, images_root: str | Path | None = None,
                 options: ReadOptions = ReadOptions()) -> list[FaceRecord]:
    """Read a dataset of format ``fmt`` (or ``auto``) with the reader's default image folder
    unless ``images_root`` (see each reader's module for what PATH is)."""
    fmt = resolve_format(fmt, path)
    return FORMATS[fmt].read(Path(path), Path(images_root) if images_root is not None else None, options)


# --------------------------------------------------------------------------------------------
# The training box set of a config


def box_set_source(cfg: Any) -> tuple[str, Path, Path | None] | None:
    """(format, path, images folder) of the config's box set: ``data.boxes`` in
    ``data.boxes_format``, or the WIDER root ``data.wider_root`` (split ``data.wider_split``);
    None when there is none."""
    data = cfg.data
    if data.boxes and data.wider_root:
        raise UserError("data.boxes and data.wider_root are both set; give the box set once")
    if data.boxes:
        path = cfg.resolve_path(data.boxes)
        if not path.exists():
            raise UserError(f"{path}: box set not found (data.boxes / --boxes)")
        return resolve_format(data.boxes_format, path), path, cfg.resolve_path(data.boxes_images)
    if data.wider_root:
        from mtcnn_train.datasets.wider import wider_paths

        root = cfg.resolve_path(data.wider_root)
        annotation, images_root = wider_paths(root, data.wider_split)
        if not annotation.is_file():
            raise UserError(f"{root}: no WIDER annotation file {annotation.relative_to(root)} "
                            "(--wider-root must hold wider_face_split/ and WIDER_<split>/)")
        return "wider", annotation, images_root
    return None


def read_box_set(cfg: Any) -> tuple[list[FaceRecord], dict[str, str]] | None:
    """The config's box set (:func:`box_set_source`) and where it came from, or None."""
    source = box_set_source(cfg)
    if source is None:
        return None
    fmt, path, images_root = source
    if FORMATS[fmt].kind != "boxes":
        raise UserError(f"{path}: a {fmt} landmark list is not a box set; give it as data.landmarks")
    records = read_dataset(fmt, path, images_root, ReadOptions.from_config(cfg))
    where = {"format": fmt, "annotation": str(path)}
    if images_root is not None:
        where["images_root"] = str(images_root)
    return records, where


def landmark_faces(records: Sequence[FaceRecord]) -> list[FaceRecord]:
    """One record per valid face that has all five landmarks (the landmark crops of a box set
    that carries them), named ``<image name>#<face number>``."""
    out = []
    for record in records:
        if record.landmarks is None:
            continue
        complete = np.isfinite(record.landmarks).all(axis=(1, 2)) & record.valid
        for j in np.flatnonzero(complete):
            out.append(FaceRecord(image_path=record.image_path, boxes=record.boxes[j:j + 1],
                                  landmarks=record.landmarks[j:j + 1], name=f"{record.name}#{j + 1}",
                                  source=record.source))
    return out
