"""COCO JSON (object detection, optionally with keypoints), as CVAT, Label Studio, Roboflow and
makesense export it, and its writer.

What we read::

    images:      [{"id": 1, "file_name": "event/img.jpg", "width": 640, "height": 480}, ...]
    categories:  [{"id": 1, "name": "face", "keypoints": ["left_eye", ...]}, ...]
    annotations: [{"id": 7, "image_id": 1, "category_id": 1, "bbox": [x, y, w, h],
                   "iscrowd": 0, "ignore": 0, "keypoints": [x1, y1, v1, ...]}, ...]

- ``bbox`` ``x y w h`` in pixels (floats) becomes ``x, y, x + w, y + h`` pixel edges.
- ``iscrowd: 1`` or ``ignore: 1`` keeps the box flagged ``invalid`` (an ignore region).
- ``keypoints`` give the five landmarks when the category's ``keypoints`` names are the usual
  ones (:data:`labels.KEYPOINT_SPELLINGS`) or are named by ``keypoint_names`` in our order; a
  point with visibility 0 is absent (NaN).  Other keypoint sets (a person's 17) are not read.
- Integer ``attributes`` named like WIDER's flags (blur, occlusion, ...) are kept as flags, so
  WIDER -> COCO -> WIDER keeps them.
- Every image in ``images`` is a record, in file order, also those without annotations
  (pictures with no face are negatives).

Problems are reported as ``FILE: annotations[12] (id 57): ...``: JSON has no lines per entry,
so the position is the entry's place in its list.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from mtcnn_train.datasets.annotation_text import (MAX_FLAG, ImagePathResolver, check_number, read_text_lines,
                                                  refuse_duplicate_images)
from mtcnn_train.datasets.labels import LabelFilter, keypoint_order, normalise_keypoint_name
from mtcnn_train.datasets.records import LANDMARK_NAMES, FaceRecord
from mtcnn_train.datasets.wider import WIDER_FLAGS
from mtcnn_train.errors import AnnotationError
from mtcnn_train.io import atomic_write_text

#: Where the images of ``folder/x.json`` are looked for, in order, when no images folder is given
#: (Roboflow: beside the JSON; CVAT and Label Studio: an ``images/`` folder beside or above it);
#: then the folder our writer notes in ``info.images_folder``.
IMAGE_FOLDER_GUESSES = (".", "images", "../images", "..")


def load_json(path: Path) -> Any:
    """A JSON document, or an AnnotationError with the line of the first syntax error."""
    text = "\n".join(read_text_lines(path))
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise AnnotationError(path, exc.lineno, f"invalid JSON: {exc.msg} (column {exc.colno})") from None
    except RecursionError:
        raise AnnotationError(path, None, "invalid JSON: nested too deeply") from None


def _number(value: Any, path: Path, where: str, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise AnnotationError(path, None, f"{where}: {what}: expected a number, got {value!r:.60}")
    return check_number(float(value), value, path, None, f"{where}: {what}")


def _flag(entry: dict, key: str, path: Path, where: str) -> int:
    value = entry.get(key, 0)
    if value in (None, False):
        return 0
    if value is True or (isinstance(value, (int, float)) and value in (0, 1)):
        return int(value)
    raise AnnotationError(path, None, f"{where}: {key}: expected 0 or 1, got {value!r:.60}")


def _list_of_dicts(doc: dict, key: str, path: Path, required: bool) -> list[dict]:
    value = doc.get(key)
    if value is None:
        if required:
            raise AnnotationError(path, None, f"no '{key}' list; not a COCO annotation file")
        return []
    if not isinstance(value, list):
        raise AnnotationError(path, None, f"'{key}' must be a list, got {type(value).__name__}")
    for k, entry in enumerate(value):
        if not isinstance(entry, dict):
            raise AnnotationError(path, None, f"{key}[{k}]: expected an object, got {entry!r:.60}")
    return value


def _ident(entry: dict, key: str, path: Path, where: str) -> int | str:
    value = entry.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise AnnotationError(path, None, f"{where}: {key}: expected a whole number or text, got {value!r:.60}")
    return value


def guess_images_root(json_file: Path, first_name: str | None, noted: Any = None) -> Path:
    """The first of :data:`IMAGE_FOLDER_GUESSES` (then the ``noted`` folder) holding the first
    image; the JSON's folder if none does."""
    guesses = [json_file.parent / guess for guess in IMAGE_FOLDER_GUESSES]
    if isinstance(noted, str) and noted:
        guesses.append(Path(noted))
    for folder in guesses:
        if first_name and (folder / first_name).is_file():
            return folder.resolve()
    return json_file.parent.resolve()


def _category_points(category: dict, mapping: Sequence[str], path: Path, where: str) -> list[int] | None:
    names = category.get("keypoints") or []
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise AnnotationError(path, None, f"{where}: keypoints: expected a list of names, got {names!r:.80}")
    if not names:
        return None
    order = keypoint_order(names, mapping)
    if order is None and (mapping or len(names) == 5):
        # Five keypoints that are not ours by name: a face set whose names we cannot place.
        wanted = ", ".join(LANDMARK_NAMES)
        hint = (f"data.keypoint_names {list(mapping)} names points it does not have" if mapping else
                f"name them in our order ({wanted}) with data.keypoint_names / --keypoint-names")
        raise AnnotationError(path, None, f"{where}: keypoints {names} are not the five face points by their "
                                          f"usual names; {hint}")
    return order


def _points(values: Any, order: list[int], count: int, path: Path, where: str) -> np.ndarray:
    if not isinstance(values, list) or len(values) != 3 * count:
        raise AnnotationError(path, None, f"{where}: keypoints: expected {3 * count} numbers (x y visibility for "
                                          f"each of the category's {count} keypoints), got {values!r:.80}")
    points = np.full((5, 2), np.nan)
    for ours, theirs in enumerate(order):
        x, y, v = (_number(values[3 * theirs + j], path, where, f"keypoints[{3 * theirs + j}]") for j in range(3))
        if v > 0:
            points[ours] = x, y
    return points


def read_coco(json_file: str | Path, images_root: str | Path | None = None, *,
              labels: LabelFilter = LabelFilter(), keypoint_names: Sequence[str] = ()) -> list[FaceRecord]:
    """Read a COCO JSON file; one :class:`FaceRecord` per entry of ``images``, in file order.

    ``images_root``: folder the ``file_name`` entries are relative to (default: guessed, see
    :data:`IMAGE_FOLDER_GUESSES`).  ``labels`` picks the face categories (names or ids);
    ``keypoint_names`` maps keypoints whose names are not the usual ones.
    """
    path = Path(json_file)
    doc = load_json(path)
    if not isinstance(doc, dict):
        raise AnnotationError(path, None, f"expected a COCO object with 'images', got a {type(doc).__name__}")
    images = _list_of_dicts(doc, "images", path, required=True)
    categories = _list_of_dicts(doc, "categories", path, required=False)
    annotations = _list_of_dicts(doc, "annotations", path, required=False)

    cats = _read_categories(categories, labels, keypoint_names, path)
    by_id, names = _read_image_names(images, path)

    boxes: list[list[np.ndarray]] = [[] for _ in images]
    points: list[list[np.ndarray]] = [[] for _ in images]
    flags: list[list[dict[str, int]]] = [[] for _ in images]
    any_points = False
    for k, ann in enumerate(annotations):
        where = f"annotations[{k}] (id {ann.get('id')!r:.30})"
        iid = _ident(ann, "image_id", path, where)
        if iid not in by_id:
            raise AnnotationError(path, None, f"{where}: image_id {iid!r} is not in 'images'")
        if "category_id" in ann or cats:
            cid = _ident(ann, "category_id", path, where)
            if cid not in cats:
                raise AnnotationError(path, None, f"{where}: category_id {cid!r} is not in 'categories'")
            decision, order, count = cats[cid]
        else:  # no categories at all: every box is a face
            decision, order, count = labels.decide(""), None, 0
        if decision is None:
            continue
        bbox = ann.get("bbox")
        if not isinstance(bbox, list) or len(bbox) != 4:
            raise AnnotationError(path, None, f"{where}: bbox: expected [x, y, width, height], got {bbox!r:.80}")
        x, y, w, h = (_number(v, path, where, f"bbox[{j}]") for j, v in enumerate(bbox))
        if w < 0 or h < 0:
            raise AnnotationError(path, None, f"{where}: bbox: negative size (width {w:g}, height {h:g})")
        face_flags = {"invalid": int(decision == "ignore" or _flag(ann, "iscrowd", path, where)
                                     or _flag(ann, "ignore", path, where))}
        attributes = ann.get("attributes")
        if isinstance(attributes, dict):
            wider_attributes = {key: value for key, value in attributes.items() if key in WIDER_FLAGS
                                and key != "invalid" and isinstance(value, int) and not isinstance(value, bool)
                                and value >= 0}
            for key, value in wider_attributes.items():
                if value > MAX_FLAG:  # WIDER's attributes are 0..2; flags are stored as int32
                    raise AnnotationError(path, None, f"{where}: attributes.{key}: {value} is out of range "
                                                      f"(limit {MAX_FLAG})")
            face_flags.update(wider_attributes)
        index = by_id[iid]
        boxes[index].append(np.array([x, y, x + w, y + h]))
        flags[index].append(face_flags)
        if order is not None and ann.get("keypoints") is not None:
            points[index].append(_points(ann["keypoints"], order, count, path, where))
            any_points = True
        else:
            points[index].append(np.full((5, 2), np.nan))

    info = doc.get("info") if isinstance(doc.get("info"), dict) else {}
    root = (Path(images_root) if images_root is not None else
            guess_images_root(path, names[0] if names else None, info.get("images_folder")))
    resolve = ImagePathResolver(root, path)
    records = []
    for k, name in enumerate(names):
        flag_names = sorted({key for f in flags[k] for key in f} | {"invalid"})
        try:
            image_path = resolve(name, None)
        except AnnotationError as exc:  # name the entry, as every other COCO error does
            raise AnnotationError(path, None, f"images[{k}]: {exc.reason}") from None
        records.append(FaceRecord(
            image_path=image_path,
            boxes=np.array(boxes[k], dtype=np.float64).reshape(-1, 4),
            landmarks=np.array(points[k]).reshape(-1, 5, 2) if any_points else None,
            flags={key: [f.get(key, 0) for f in flags[k]] for key in flag_names},
            name=name,
            source=f"{path}:images[{k}]",
        ))
    refuse_duplicate_images(records)
    return records


def _read_categories(categories: list[dict], labels: LabelFilter, keypoint_names: Sequence[str],
                     path: Path) -> dict[Any, tuple[str | None, list[int] | None, int]]:
    """Category id -> (the label filter's decision, the order of its 5 landmarks among its
    keypoints or None, its keypoint count)."""
    cats: dict[Any, tuple[str | None, list[int] | None, int]] = {}
    for k, cat in enumerate(categories):
        where = f"categories[{k}]"
        cid = _ident(cat, "id", path, where)
        if cid in cats:
            raise AnnotationError(path, None, f"{where}: category id {cid!r} appears twice")
        decision = labels.decide(cid, cat.get("name", ""))
        names = cat.get("keypoints") or []
        order = _category_points(cat, keypoint_names, path, f"{where} ({cat.get('name')!r})") if decision else None
        cats[cid] = (decision, order, len(names) if isinstance(names, list) else 0)
    return cats


def _read_image_names(images: list[dict], path: Path) -> tuple[dict[Any, int], list[str]]:
    """Image id -> index in ``images``, and each image's file name (forward slashes)."""
    by_id: dict[Any, int] = {}
    names: list[str] = []
    for k, image in enumerate(images):
        where = f"images[{k}]"
        iid = _ident(image, "id", path, where)
        if iid in by_id:
            raise AnnotationError(path, None, f"{where}: image id {iid!r} appears twice")
        name = image.get("file_name")
        if not isinstance(name, str) or not name.strip():
            raise AnnotationError(path, None, f"{where} (id {iid}): file_name: expected a file name, got {name!r:.60}")
        by_id[iid] = k
        names.append(name.strip().replace("\\", "/"))
    return by_id, names


# --------------------------------------------------------------------------------------------
# Writing


def format_coco(records: Iterable[FaceRecord], names: Sequence[str], sizes: Sequence[tuple[int, int]],
                images_folder: str | Path | None = None) -> dict:
    """A COCO document of ``records``: one category ``face`` (with our five keypoints when any
    record has landmarks), ``names[k]`` as file names and ``sizes[k]`` as ``(width, height)``.

    Boxes are the records' float32 values written exactly (``x1`` and the width ``x2 - x1``, which
    float64 holds exactly), so reading them back gives the same boxes bit for bit.  Faces flagged invalid get ``iscrowd: 1`` and ``ignore: 1``;
    other WIDER flags go into ``attributes``.  ``images_folder`` (the folder the names are
    relative to) is noted in ``info``, where our reader looks when the usual places fail.
    """
    records = list(records)
    with_points = any(r.landmarks is not None and np.isfinite(r.landmarks).any() for r in records)
    category: dict[str, Any] = {"id": 1, "name": "face", "supercategory": "face"}
    if with_points:
        category.update(keypoints=list(LANDMARK_NAMES), skeleton=[])
    images, annotations = [], []
    for k, (record, name, (width, height)) in enumerate(zip(records, names, sizes)):
        images.append({"id": k + 1, "file_name": name, "width": int(width), "height": int(height)})
        for j, box in enumerate(record.boxes):
            x1, y1, x2, y2 = (float(v) for v in box)
            w, h = x2 - x1, y2 - y1
            invalid = int(record.flags["invalid"][j])
            ann: dict[str, Any] = {"id": len(annotations) + 1, "image_id": k + 1, "category_id": 1,
                                   "bbox": [x1, y1, w, h], "area": w * h,
                                   "iscrowd": invalid, "ignore": invalid}
            attributes = {key: int(record.flags[key][j]) for key in WIDER_FLAGS
                          if key in record.flags and key != "invalid"}
            if attributes:
                ann["attributes"] = attributes
            if with_points:
                pts = record.landmarks[j] if record.landmarks is not None else np.full((5, 2), np.nan)
                ann["keypoints"] = [v for x, y in pts for v in
                                    ((float(x), float(y), 2) if np.isfinite([x, y]).all() else (0, 0, 0))]
                ann["num_keypoints"] = int(np.isfinite(pts).all(axis=1).sum())
            annotations.append(ann)
    info = {"description": "written by mtcnn-train data convert"}
    if images_folder is not None:
        info["images_folder"] = str(Path(images_folder).resolve())
    return {"info": info, "images": images,
            "annotations": annotations, "categories": [category]}


def write_coco(records: Iterable[FaceRecord], json_file: str | Path, names: Sequence[str],
               sizes: Sequence[tuple[int, int]], images_folder: str | Path | None = None) -> None:
    """Write :func:`format_coco` of ``records`` to ``json_file``, atomically."""
    atomic_write_text(json_file, json.dumps(format_coco(records, names, sizes, images_folder), indent=1) + "\n")


__all__ = ["read_coco", "write_coco", "format_coco", "guess_images_root", "load_json", "normalise_keypoint_name"]
