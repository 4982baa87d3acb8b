"""YOLO text labels (Ultralytics, darknet, and the face-landmark variants YOLOv5-face and
YOLOv8-face), and their writer.

One ``.txt`` per image, one object per line, every number normalised by the image's size::

    class cx cy w h                                   boxes
    class cx cy w h x1 y1 ... x5 y5                   YOLOv5-face: 5 landmarks, -1 = absent
    class cx cy w h x1 y1 v1 ... x5 y5 v5             YOLOv8 pose / face: visibility 0 = absent

Landmarks are read in our order (left eye, right eye, nose, left and right mouth corner, left and
right as seen in the image), the order YOLOv5-face's WIDER labels use.  The image's size comes
from its header (:func:`io.image_size`).

Where the images and labels are (``path``):

- a folder holding ``images/`` and ``labels/`` (Ultralytics, Roboflow); or the ``labels/`` or
  ``images/`` folder itself; or a folder with images and ``.txt`` files side by side (darknet).
  Every image under the images folder is a record, in sorted order; an image without a label file
  has no faces.  The label of ``images/a/b.jpg`` is ``labels/a/b.txt``.
- a list file (``.txt``): one image path per line, relative to the list's folder (Ultralytics'
  ``train.txt``); the label path swaps the last ``images`` folder for ``labels``.  Records keep the
  list's order.
- a dataset file (``.yaml``): its ``train`` entry (a folder or list, relative to the file's folder)
  and its class ``names``, which ``classes`` may then use as well as ids (so may a
  ``classes.txt`` or ``obj.names`` beside the labels).

Record names are image paths relative to the images folder (``a/b.jpg``), as WIDER names are.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from mtcnn_train.datasets.annotation_text import (ImagePathResolver, parse_flag, parse_numbers, read_text_lines,
                                                  refuse_duplicate_images)
from mtcnn_train.datasets.labels import LabelFilter
from mtcnn_train.datasets.records import FaceRecord
from mtcnn_train.errors import AnnotationError, ImageError, UserError
from mtcnn_train.io import atomic_write_text, image_size

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
LAYOUTS = {5: "class cx cy w h", 15: "class cx cy w h x1 y1 ... x5 y5",
           20: "class cx cy w h x1 y1 v1 ... x5 y5 v5"}
_BOX_NAMES = ("cx", "cy", "w", "h")
_POINT_NAMES = {15: tuple(f"{a}{i}" for i in range(1, 6) for a in "xy"),
                20: tuple(f"{a}{i}" for i in range(1, 6) for a in "xyv")}
#: Class names the writer gives: valid faces, and faces flagged invalid (ignore regions).
CLASS_NAMES = ("face", "ignore")


def _label_path(image_rel: str, labels_dir: Path) -> Path:
    return labels_dir / Path(image_rel).with_suffix(".txt")


def _walk_images(images_dir: Path) -> list[str]:
    found = [p.relative_to(images_dir).as_posix() for p in images_dir.rglob("*")
             if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".") and p.is_file()]
    return sorted(found)


def _folder_layout(path: Path, images_root: Path | None) -> tuple[Path, Path]:
    """(images folder, labels folder) of a YOLO folder."""
    if (path / "labels").is_dir() or (path / "images").is_dir():
        return (images_root or path / "images"), path / "labels"
    if path.name == "labels":
        return (images_root or path.parent / "images"), path
    if path.name == "images" and (path.parent / "labels").is_dir():
        return (images_root or path), path.parent / "labels"
    return (images_root or path), path


def _listed_images(list_file: Path, images_root: Path | None) -> list[tuple[str, Path, Path, int]]:
    """(name, image path, label path, line) for each line of an Ultralytics image list.

    A listed ``sub/images/a/b.jpg`` is the image ``a/b.jpg`` of the images folder ``sub/images``
    (the folder may be a link to where the images are) with the label ``sub/labels/a/b.txt``.
    """
    base = images_root or list_file.parent
    resolvers: dict[Path, ImagePathResolver] = {}
    out = []
    for number, line in enumerate(read_text_lines(list_file), 1):
        listed = line.strip().replace("\\", "/")
        if not listed:
            continue
        parts = Path(listed.removeprefix("./")).parts
        if "images" in parts[:-1]:
            cut = len(parts) - 1 - parts[::-1].index("images")
            images_dir, name = base.joinpath(*parts[:cut + 1]), "/".join(parts[cut + 1:])
            label = base.joinpath(*parts[:cut], "labels", *parts[cut + 1:]).with_suffix(".txt")
        else:
            images_dir, name = base, "/".join(parts)
            label = base.joinpath(*parts).with_suffix(".txt")
        if images_dir not in resolvers:
            resolvers[images_dir] = ImagePathResolver(images_dir, list_file)
        out.append((name, resolvers[images_dir](name, number), label, number))
    return out


def _dataset_yaml(path: Path) -> tuple[Path, dict[str, str]]:
    """The ``train`` entry of an Ultralytics dataset file and its class names by id."""
    import yaml

    try:
        doc = yaml.safe_load("\n".join(read_text_lines(path)))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise AnnotationError(path, mark.line + 1 if mark else None, f"invalid YAML: {getattr(exc, 'problem', exc)}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("train"), str):
        raise AnnotationError(path, None, "expected a dataset file with a 'train' entry (an image folder or list)")
    base = path.parent / str(doc["path"]) if isinstance(doc.get("path"), str) else path.parent
    names = doc.get("names") or {}
    if isinstance(names, list):
        names = dict(enumerate(names))
    if not isinstance(names, dict):
        raise AnnotationError(path, None, f"names: expected a list of class names or a mapping from class id to "
                                          f"name, got {names!r:.60}")
    return base / doc["train"], {str(k): str(v) for k, v in names.items()}


def _names_file(folders: Iterable[Path]) -> dict[str, str]:
    """Class names from a darknet/labelImg ``classes.txt`` or ``obj.names`` (one name a line)."""
    for folder in folders:
        for file_name in ("classes.txt", "obj.names"):
            names_file = folder / file_name
            if names_file.is_file():
                names = [line.strip() for line in read_text_lines(names_file) if line.strip()]
                return {str(i): name for i, name in enumerate(names)}
    return {}


def _points(values: np.ndarray, count: int) -> np.ndarray:
    """Normalised landmark values -> (5, 2), NaN where absent (-1, or visibility 0)."""
    step = 2 if count == 15 else 3
    points = np.full((5, 2), np.nan)
    for i in range(5):
        x, y = values[step * i], values[step * i + 1]
        visible = values[step * i + 2] > 0 if step == 3 else True
        if visible and x >= 0 and y >= 0:
            points[i] = x, y
    return points


def read_label_file(label: Path, image_path: Path, labels: LabelFilter, class_names: dict[str, str],
                    size: tuple[int, int] | None = None) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """One label file -> (boxes (N, 4) in pixels, landmarks (N, 5, 2) or None, invalid (N,))."""
    boxes, points, invalid = [], [], []
    has_points = False
    for number, line in enumerate(read_text_lines(label), 1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) not in LAYOUTS:
            polygon = " (a polygon: export boxes, not segments)" if len(fields) > 5 and len(fields) % 2 == 1 else ""
            raise AnnotationError(label, number, f"expected 5, 15 or 20 fields ({LAYOUTS[5]}, then 5 landmarks as "
                                                 f"x y or x y visibility), got {len(fields)}{polygon}")
        cls = str(parse_flag(fields[0], label, number, "class"))
        decision = labels.decide(cls, class_names.get(cls, cls))
        if decision is None:
            continue
        cx, cy, w, h = parse_numbers(fields[1:5], label, number, _BOX_NAMES)
        if w < 0 or h < 0:
            raise AnnotationError(label, number, f"negative box size (w {w:g}, h {h:g})")
        if size is None:
            try:
                size = image_size(image_path)
            except ImageError as exc:
                raise AnnotationError(label, number, f"{exc} (its size scales the normalised boxes)") from None
        width, height = size
        boxes.append([(cx - w / 2) * width, (cy - h / 2) * height, (cx + w / 2) * width, (cy + h / 2) * height])
        invalid.append(int(decision == "ignore"))
        if len(fields) > 5:
            pts = _points(parse_numbers(fields[5:], label, number, _POINT_NAMES[len(fields)]), len(fields))
            points.append(pts * np.array([width, height]))
            has_points = True
        else:
            points.append(np.full((5, 2), np.nan))
    landmarks = np.array(points).reshape(-1, 5, 2) if has_points else None
    return np.array(boxes, dtype=np.float64).reshape(-1, 4), landmarks, np.array(invalid, dtype=np.int32)


def read_yolo(path: str | Path, images_root: str | Path | None = None, *,
              labels: LabelFilter = LabelFilter()) -> list[FaceRecord]:
    """Read a YOLO set; one :class:`FaceRecord` per image (layouts in the module docstring).

    ``images_root`` replaces the images folder (of a folder layout) or the folder the list's
    paths are relative to.
    """
    path = Path(path)
    root = Path(images_root) if images_root is not None else None
    class_names: dict[str, str] = {}
    if path.suffix.lower() in (".yaml", ".yml"):
        path, class_names = _dataset_yaml(path)
    if path.is_file():
        items = _listed_images(path, root)
        class_names = class_names or _names_file([path.parent])
    elif path.is_dir():
        images_dir, labels_dir = _folder_layout(path, root)
        if not images_dir.is_dir():
            raise UserError(f"{path}: no images folder {images_dir}; pass the folder holding the images (--images)")
        items = [(name, images_dir / name, _label_path(name, labels_dir), None) for name in _walk_images(images_dir)]
        class_names = class_names or _names_file(dict.fromkeys([path, labels_dir, labels_dir.parent]))
    else:
        raise UserError(f"{path}: not found (expected a YOLO folder, image list or dataset .yaml)")
    records = []
    for name, image_path, label, number in items:
        source = f"{path}:{number}" if number is not None else str(label)
        if label.is_file():
            boxes, points, invalid = read_label_file(label, image_path, labels, class_names)
        elif label.exists():  # a folder (or a device) where the label file should be: not "no faces"
            raise AnnotationError(label, None, "not a label file (a folder?); expected the image's YOLO labels")
        else:  # Ultralytics reads an image without a label file as a picture with no objects
            boxes, points, invalid = np.zeros((0, 4)), None, np.zeros(0, np.int32)
        records.append(FaceRecord(image_path=image_path, boxes=boxes, landmarks=points, flags={"invalid": invalid},
                                  name=name, source=source))
    refuse_duplicate_images(records)
    if any(r.landmarks is not None for r in records):  # one set, one layout: NaN where a file had none
        for r in records:
            if r.landmarks is None:
                r.landmarks = np.full((r.num_faces, 5, 2), np.nan, np.float32)
    return records


# --------------------------------------------------------------------------------------------
# Writing


def format_label_file(record: FaceRecord, width: int, height: int) -> str:
    """The label text of one image: class 0 for faces, 1 for faces flagged invalid; with the
    five landmarks as ``x y visibility`` when the record has landmarks.  Numbers are Python's
    shortest round-trip text of the float64 quotients, so a reader multiplying back by the image
    size gets the float32 box the record holds."""
    lines = []
    for j, (x1, y1, x2, y2) in enumerate(np.asarray(record.boxes, dtype=np.float64)):
        values = [(x1 + x2) / 2 / width, (y1 + y2) / 2 / height, (x2 - x1) / width, (y2 - y1) / height]
        fields = [str(int(record.flags["invalid"][j] != 0))] + [repr(float(v)) for v in values]
        if record.landmarks is not None:
            for x, y in np.asarray(record.landmarks[j], dtype=np.float64):
                fields += ([repr(x / width), repr(y / height), "2"] if np.isfinite([x, y]).all() else ["0", "0", "0"])
        lines.append(" ".join(fields))
    return "".join(f"{line}\n" for line in lines)


def write_yolo(records: Iterable[FaceRecord], out_dir: str | Path, names: Sequence[str],
               sizes: Sequence[tuple[int, int]], images_root: str | Path) -> None:
    """Write an Ultralytics-style set into ``out_dir`` (which must not exist or be empty)::

        labels/<name>.txt   one per record (empty for an image without faces)
        images              a link to ``images_root`` (the images are not copied)
        images.txt          the records' images, in order (``./images/<name>``)
        data.yaml           train/val = images.txt, names {0: face, 1: ignore}; kpt_shape with landmarks
        classes.txt         the class names, one a line (darknet, labelImg)
    """
    out = Path(out_dir)
    records = list(records)
    for record, name, (width, height) in zip(records, names, sizes):
        atomic_write_text(_label_path(name, out / "labels"), format_label_file(record, width, height))
    (out / "images").symlink_to(Path(images_root).resolve(), target_is_directory=True)
    atomic_write_text(out / "images.txt", "".join(f"./images/{name}\n" for name in names))
    yaml_lines = ["# written by mtcnn-train data convert", "train: images.txt", "val: images.txt",
                  "names:", *(f"  {i}: {n}" for i, n in enumerate(CLASS_NAMES))]
    if any(r.landmarks is not None for r in records):
        yaml_lines += ["kpt_shape: [5, 3]", "flip_idx: [1, 0, 2, 4, 3]"]
    atomic_write_text(out / "data.yaml", "\n".join(yaml_lines) + "\n")
    atomic_write_text(out / "classes.txt", "".join(f"{n}\n" for n in CLASS_NAMES))
