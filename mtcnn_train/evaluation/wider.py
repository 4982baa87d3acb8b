"""WIDER FACE average precision, following the official ``eval_tools`` (wider_eval.m).

The protocol, as the official MATLAB does it (read_pred.m, norm_score.m, evaluation.m,
boxoverlap.m, VOCap); docs/FDDB.md lists the evidence and where we differ:

* Predictions of each image are sorted by score, highest first (``sort(..., 'descend')``, a
  stable sort), then every score of the whole set is mapped to [0, 1] by the set's min and max.
* For each image, each prediction in turn takes the face it overlaps most (IoU with the ``+1``
  pixel convention, first face on ties); if that IoU is at least 0.5 and the face is ignored,
  the prediction is dropped from the proposals; if the face is kept and not yet found, it counts
  as recalled.  Predictions never "use up" a face: a second hit on a found face is a proposal
  that recalls nothing.
* At 1000 thresholds ``1 - t/1000`` (t = 1..1000) the image adds the proposals among its
  predictions scoring ``>=`` the threshold and the faces they recalled.  Images without faces or
  without predictions add nothing (their predictions are never false positives), but their
  kept faces count in the recall denominator.
* Precision = recalled / proposals, recall = recalled / kept faces; AP is the VOC sum of
  precision-envelope times recall steps.

"Kept" faces come from the official ``wider_{easy,medium,hard}_val.mat`` ``gt_list`` indices when
they are given; otherwise one setting, ``all``, keeps every valid face (not flagged invalid,
positive size) and ignores the rest.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from mtcnn_train.errors import AnnotationError, UserError
from mtcnn_train.detection.runner import DetectionLog, detect_images, detector_fingerprint
from mtcnn_train.io import atomic_write_json, atomic_write_text

#: The official settings and the .mat file holding each one's kept-face indices.
OFFICIAL_SETTINGS = ("easy", "medium", "hard")
#: Setting used when no official .mat files are given.
ALL_SETTING = "all"
PREDICTIONS_DIR = "predictions"


# --------------------------------------------------------------------------------------------
# Ground truth


@dataclass
class WiderGroundTruth:
    """Faces of a set of images in WIDER's own coordinates, plus the kept faces per setting.

    Attributes:
        keys: ``event/image`` (no extension), the prediction file of each image without ``.txt``.
        boxes: per image ``(N, 4)`` float ``x y w h`` as in the official files.
        settings: setting name -> per image array of kept (scored) face indices, 0-based.
        image_paths: per image the image file, where known (needed only to run a detector).
    """

    keys: list[str]
    boxes: list[np.ndarray]
    settings: dict[str, list[np.ndarray]]
    image_paths: list[Path | None] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.image_paths:
            self.image_paths = [None] * len(self.keys)

    def subset(self, indices: Sequence[int]) -> "WiderGroundTruth":
        """The ground truth of the images at ``indices`` only (every setting restricted alike)."""
        return WiderGroundTruth([self.keys[i] for i in indices], [self.boxes[i] for i in indices],
                                {name: [kept[i] for i in indices] for name, kept in self.settings.items()},
                                [self.image_paths[i] for i in indices])


def prediction_key(name: str) -> str:
    """``0--Parade/0_Parade_marchingband_1_849.jpg`` -> ``0--Parade/0_Parade_marchingband_1_849``."""
    path = Path(name.replace("\\", "/"))
    return str(path.with_suffix("")) if path.suffix.lower() in (".jpg", ".jpeg", ".png", ".bmp") else str(path)


def ground_truth_from_records(records: Iterable[Any]) -> WiderGroundTruth:
    """Ground truth from FaceRecords (our WIDER reader): setting ``all`` keeps the valid faces."""
    keys, boxes, keep, paths = [], [], [], []
    for r in records:
        b = np.asarray(r.boxes, dtype=np.float64).reshape(-1, 4)
        keys.append(prediction_key(r.name))
        boxes.append(np.concatenate([b[:, :2], b[:, 2:] - b[:, :2]], 1))
        keep.append(np.flatnonzero(r.valid))
        paths.append(Path(r.image_path))
    return WiderGroundTruth(keys, boxes, {ALL_SETTING: keep}, paths)


def _cells(value: Any) -> list[Any]:
    """The elements of a MATLAB cell array as scipy.io.loadmat returns it (object ndarray)."""
    return list(np.asarray(value, dtype=object).reshape(-1))


def _mat_string(value: Any) -> str:
    arr = np.asarray(value)
    while arr.dtype == object and arr.size == 1:
        arr = np.asarray(arr.reshape(-1)[0])
    return str(arr.reshape(-1)[0]) if arr.size else ""


def _load_mat(path: Path, keys: Sequence[str]) -> dict[str, Any]:
    from scipy.io import loadmat

    if not path.is_file():
        raise UserError(f"{path}: official WIDER ground-truth file not found")
    try:
        data = loadmat(str(path))
    except Exception as exc:  # scipy raises several types for unreadable .mat files
        raise UserError(f"{path}: not a readable MATLAB file ({exc.__class__.__name__}: {exc})") from None
    missing = [k for k in keys if k not in data]
    if missing:
        raise UserError(f"{path}: missing variable(s) {', '.join(missing)}")
    return data


def load_wider_mat(gt_dir: str | Path, images_root: str | Path | None = None, split: str = "val") -> WiderGroundTruth:
    """The official ``wider_face_<split>.mat`` and ``wider_{easy,medium,hard}_<split>.mat``.

    ``gt_list`` indices are 1-based in the files and 0-based here.
    """
    gt_dir = Path(gt_dir)
    main = _load_mat(gt_dir / f"wider_face_{split}.mat", ("event_list", "file_list", "face_bbx_list"))
    events = [_mat_string(e) for e in _cells(main["event_list"])]
    files = [[_mat_string(f) for f in _cells(fl)] for fl in _cells(main["file_list"])]
    faces = [[np.asarray(b, dtype=np.float64).reshape(-1, 4) for b in _cells(bl)] for bl in _cells(main["face_bbx_list"])]
    if not (len(events) == len(files) == len(faces)):
        raise UserError(f"{gt_dir}: event_list, file_list and face_bbx_list disagree in length")
    keys, boxes, paths = [], [], []
    for event, names, event_faces in zip(events, files, faces):
        if len(names) != len(event_faces):
            raise UserError(f"{gt_dir}: event {event}: {len(names)} files but {len(event_faces)} box lists")
        for name, b in zip(names, event_faces):
            keys.append(f"{event}/{name}")
            boxes.append(b)
            paths.append(Path(images_root) / event / f"{name}.jpg" if images_root is not None else None)
    settings = {}
    for setting in OFFICIAL_SETTINGS:
        path = gt_dir / f"wider_{setting}_{split}.mat"
        data = _load_mat(path, ("gt_list",))
        kept = [np.asarray(k, dtype=np.float64).reshape(-1).astype(np.int64) - 1
                for per_event in _cells(data["gt_list"]) for k in _cells(per_event)]
        if len(kept) != len(keys):
            raise UserError(f"{path}: gt_list covers {len(kept)} images, wider_face_{split}.mat has {len(keys)}")
        for i, k in enumerate(kept):
            if len(k) and (k.min() < 0 or k.max() >= len(boxes[i])):
                raise UserError(f"{path}: face index out of range for image {keys[i]}")
        settings[setting] = kept
    return WiderGroundTruth(keys, boxes, settings, paths)


# --------------------------------------------------------------------------------------------
# Prediction folders: <dir>/<event>/<image>.txt holding the image name, the count, then
# "x y w h score" lines.


def _format_row(row: np.ndarray) -> str:
    return " ".join(f"{v:.2f}" for v in row[:4]) + " " + format(float(row[4]), ".9g")


def write_predictions(pred_dir: str | Path, predictions: Mapping[str, np.ndarray]) -> None:
    """Write ``key -> (M, 5) x y w h score`` as the official per-image text files."""
    pred_dir = Path(pred_dir)
    for key, rows in predictions.items():
        rows = np.asarray(rows, dtype=np.float64).reshape(-1, 5)
        lines = [Path(key).name, str(len(rows))] + [_format_row(r) for r in rows]
        atomic_write_text(pred_dir / f"{key}.txt", "\n".join(lines) + "\n")


def read_prediction_file(path: str | Path) -> np.ndarray:
    """One prediction file -> ``(M, 5)`` ``x y w h score`` (file order)."""
    path = Path(path)
    try:
        lines = [ln for ln in path.read_text(encoding="utf-8", errors="replace").splitlines()]
    except OSError as exc:
        raise UserError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if len(lines) < 2:
        raise AnnotationError(path, len(lines) or None, "expected the image name and the box count")
    try:
        count = float(lines[1].split()[0])
    except (ValueError, IndexError):
        raise AnnotationError(path, 2, f"expected the box count, got {lines[1].strip()!r}") from None
    if count < 0 or not count.is_integer():
        raise AnnotationError(path, 2, f"box count must be a whole number >= 0, got {lines[1].strip()!r}")
    count = int(count)
    body = lines[2:]
    if count > len(body):  # before allocating: a corrupt count may be astronomically large
        raise AnnotationError(path, len(lines), f"expected {count} boxes (count on line 2), found {len(body)} lines")
    rows = np.zeros((count, 5))
    for k in range(count):
        if k >= len(body):
            raise AnnotationError(path, len(lines), f"expected {count} boxes, found {k}")
        fields = body[k].split()
        if len(fields) < 5:
            raise AnnotationError(path, k + 3, f"expected 'x y w h score', got {body[k].strip()!r}")
        try:
            rows[k] = [float(v) for v in fields[:5]]
        except ValueError:
            raise AnnotationError(path, k + 3, f"expected numbers 'x y w h score', got {body[k].strip()!r}") from None
        if not np.isfinite(rows[k]).all():
            raise AnnotationError(path, k + 3, "values must be finite numbers")
    return rows


def read_predictions(pred_dir: str | Path) -> dict[str, np.ndarray]:
    """Every ``*.txt`` under ``pred_dir`` -> ``{"event/image": (M, 5)}``."""
    pred_dir = Path(pred_dir)
    if not pred_dir.is_dir():
        raise UserError(f"{pred_dir}: prediction folder not found")
    out = {}
    for path in sorted(pred_dir.rglob("*.txt")):
        if path.name.startswith(".tmp-"):
            continue
        out[path.relative_to(pred_dir).with_suffix("").as_posix()] = read_prediction_file(path)
    return out


# --------------------------------------------------------------------------------------------
# Scoring


def normalize_scores(predictions: Sequence[np.ndarray | None]) -> list[np.ndarray | None]:
    """norm_score.m: map all scores of the set to [0, 1] by the set's min and max.

    When every score is the same the official code divides 0 by 0 and every prediction then
    fails every threshold; here they all become 1 (kept at every threshold) instead.
    """
    scores = [p[:, 4] for p in predictions if p is not None and len(p)]
    if not scores:
        return [None if p is None else p.copy() for p in predictions]
    lo = min(float(s.min()) for s in scores)
    hi = max(float(s.max()) for s in scores)
    out = []
    for p in predictions:
        if p is None or not len(p):
            out.append(p)
            continue
        q = np.array(p, dtype=np.float64)
        q[:, 4] = (q[:, 4] - lo) / (hi - lo) if hi > lo else 1.0
        out.append(q)
    return out


def box_overlaps(gt: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """``(M, N)`` IoU of predictions and faces, ``x y w h`` with the ``+1`` rule of boxoverlap.m."""
    g = np.asarray(gt, dtype=np.float64).reshape(-1, 4)
    p = np.asarray(pred, dtype=np.float64).reshape(-1, 4)
    gx2, gy2 = g[:, 0] + g[:, 2], g[:, 1] + g[:, 3]
    px2, py2 = p[:, 0] + p[:, 2], p[:, 1] + p[:, 3]
    w = np.minimum(px2[:, None], gx2[None, :]) - np.maximum(p[:, None, 0], g[None, :, 0]) + 1
    h = np.minimum(py2[:, None], gy2[None, :]) - np.maximum(p[:, None, 1], g[None, :, 1]) + 1
    inter = w * h
    area_g = (g[:, 2] + 1) * (g[:, 3] + 1)
    area_p = (p[:, 2] + 1) * (p[:, 3] + 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = inter / (area_p[:, None] + area_g[None, :] - inter)
    out[(w <= 0) | (h <= 0)] = 0.0
    return out


def image_pr(pred: np.ndarray, gt: np.ndarray, kept: np.ndarray, iou: float, thresh_num: int) -> np.ndarray:
    """image_evaluation.m + image_pr_info.m for one image: ``(T, 2)`` proposals and recalled faces.

    ``pred`` rows are ``x y w h normalised_score``, sorted by score, highest first.
    """
    m = len(pred)
    kept_mask = np.zeros(len(gt), dtype=bool)
    kept_mask[kept] = True
    overlaps = box_overlaps(gt, pred[:, :4])
    safe = np.where(np.isnan(overlaps), -np.inf, overlaps)  # MATLAB max() skips NaN
    best_face = safe.argmax(axis=1)
    hit = safe[np.arange(m), best_face] >= iou
    on_kept = kept_mask[best_face]
    proposal = ~(hit & ~on_kept)  # hits on ignored faces are not proposals
    first_find = np.zeros(m, dtype=bool)
    kept_hits = np.flatnonzero(hit & on_kept)
    if len(kept_hits):
        _, first = np.unique(best_face[kept_hits], return_index=True)
        first_find[kept_hits[first]] = True
    recalled = np.cumsum(first_find)
    proposals = np.cumsum(proposal)
    thresholds = 1 - np.arange(1, thresh_num + 1) / thresh_num
    scores = pred[:, 4]
    # Scores are sorted descending, so "the last prediction with score >= t" is the count - 1.
    counts = np.searchsorted(-scores, -thresholds, side="right")
    out = np.zeros((thresh_num, 2))
    has = counts > 0
    out[has, 0] = proposals[counts[has] - 1]
    out[has, 1] = recalled[counts[has] - 1]
    return out


def voc_ap(recall: np.ndarray, precision: np.ndarray) -> float:
    """VOCap.m: precision envelope (MATLAB max, which skips NaN) summed over recall steps."""
    mrec = np.concatenate([[0.0], recall, [1.0]])
    mpre = np.concatenate([[0.0], precision, [0.0]])
    mpre = np.fmax.accumulate(mpre[::-1])[::-1]
    steps = np.flatnonzero(mrec[1:] != mrec[:-1]) + 1
    return float(np.sum((mrec[steps] - mrec[steps - 1]) * mpre[steps]))


@dataclass
class WiderAP:
    """One setting's result: AP and the 1000-point curve (index t: threshold ``1 - (t+1)/T``)."""

    ap: float
    precision: np.ndarray
    recall: np.ndarray
    faces: int
    thresholds: np.ndarray

    def to_json(self) -> dict[str, Any]:
        return {"ap": None if self.ap != self.ap else self.ap, "faces": self.faces}


def _sorted(pred: np.ndarray | None) -> np.ndarray | None:
    if pred is None or not len(pred):
        return None
    pred = np.asarray(pred, dtype=np.float64).reshape(-1, 5)
    return pred[np.argsort(-pred[:, 4], kind="stable")]


def average_precision(gt_boxes: Sequence[np.ndarray], kept: Sequence[np.ndarray],
                      predictions: Sequence[np.ndarray | None], iou: float = 0.5, thresh_num: int = 1000,
                      normalize: bool = True) -> WiderAP:
    """AP of one setting over a set of images (official protocol, see the module docstring).

    Args:
        gt_boxes: per image ``(N, 4)`` faces ``x y w h``.
        kept: per image the indices (0-based) of the faces that count; others are ignored.
        predictions: per image ``(M, 5)`` ``x y w h score`` or None (any order; sorted here).
        normalize: map scores to [0, 1] over this set first (turn off when the caller already
            normalised over a larger set, as :func:`evaluate_predictions` does).
    """
    if not (len(gt_boxes) == len(kept) == len(predictions)):
        raise ValueError("gt_boxes, kept and predictions need one entry per image")
    preds = [_sorted(p) for p in predictions]
    if normalize:
        preds = normalize_scores(preds)
    curve = np.zeros((thresh_num, 2))
    faces = 0
    for gt, keep, pred in zip(gt_boxes, kept, preds):
        keep = np.asarray(keep, dtype=np.int64).reshape(-1)
        faces += len(keep)
        gt = np.asarray(gt, dtype=np.float64).reshape(-1, 4)
        if len(gt) == 0 or pred is None or len(pred) == 0:
            continue
        curve += image_pr(pred, gt, keep, iou, thresh_num)
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = curve[:, 1] / curve[:, 0]  # 0/0 = NaN where nothing is proposed, as in MATLAB
        recall = curve[:, 1] / faces if faces else np.full(thresh_num, np.nan)
    ap = voc_ap(recall, precision) if faces else float("nan")
    return WiderAP(ap, precision, recall, faces, 1 - np.arange(1, thresh_num + 1) / thresh_num)


def evaluate_predictions(gt: WiderGroundTruth, predictions: Mapping[str, np.ndarray], iou: float = 0.5,
                         thresh_num: int = 1000) -> tuple[dict[str, WiderAP], int]:
    """AP of every setting of ``gt``; returns the results and the number of images without a file.

    Scores are normalised once over the predictions of the images in ``gt`` (the official
    norm_score runs over everything read for the ground-truth images) and shared by all settings.
    """
    preds = [_sorted(predictions.get(k)) for k in gt.keys]
    missing = sum(1 for k in gt.keys if k not in predictions)
    preds = normalize_scores(preds)
    results = {name: average_precision(gt.boxes, kept, preds, iou, thresh_num, normalize=False)
               for name, kept in gt.settings.items()}
    return results, missing


def _write_report(out_dir: Path, results: Mapping[str, WiderAP], extra: Mapping[str, Any], echo) -> None:
    from mtcnn_train.evaluation.plots import plot_pr

    for name, res in results.items():
        rows = np.stack([res.thresholds, res.precision, res.recall], 1)
        text = "threshold precision recall\n" + "".join(f"{t:.3f} {p:.6f} {r:.6f}\n" for t, p, r in rows)
        atomic_write_text(out_dir / f"pr_{name}.txt", text)
    summary = {"ap": {name: res.to_json() for name, res in results.items()}}
    summary.update(extra)
    atomic_write_json(out_dir / "ap.json", summary)
    plot_pr(out_dir / "pr_curve.png", [(n, r.precision, r.recall, r.ap) for n, r in results.items()])
    for name, res in results.items():
        shown = f"{res.ap:.4f}" if res.ap == res.ap else "n/a (no faces)"
        echo(f"WIDER {name:<6} AP {shown}  ({res.faces} faces)")


def evaluate_wider_predictions(gt: WiderGroundTruth, predictions: Mapping[str, np.ndarray], out_dir: str | Path,
                               cfg: Any, echo=print, images_in_ground_truth: int | None = None) -> dict[str, WiderAP]:
    """Score a prediction set and write ``ap.json``, ``pr_<setting>.txt`` and ``pr_curve.png``.

    ``images_in_ground_truth``: how many images the ground truth listed when ``gt`` is the part
    of it that was scored (recorded in ``ap.json`` beside ``images``).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    results, missing = evaluate_predictions(gt, predictions, cfg.evaluation.wider_iou, cfg.evaluation.wider_thresholds)
    unknown = len(set(predictions) - set(gt.keys))
    coverage = {"images_in_ground_truth": images_in_ground_truth} if images_in_ground_truth is not None else {}
    _write_report(out_dir, results, {"images": len(gt.keys), **coverage, "images_without_predictions": missing,
                                     "predictions_not_in_ground_truth": unknown}, echo)
    if missing:
        echo(f"  note: {missing} of {len(gt.keys)} image(s) have no prediction file (scored as no detections)")
    if unknown:
        echo(f"  note: {unknown} prediction file(s) match no ground-truth image and were ignored")
    return results


def evaluate_wider_with_detector(cascade: Any, gt: WiderGroundTruth, out_dir: str | Path, cfg: Any,
                                 fingerprint: dict[str, Any] | None = None, echo=print) -> dict[str, WiderAP]:
    """Run the detector over the ground-truth images, write ``predictions/`` in the official
    layout, score it (what the files say) and write the report.  Resumes after an interruption.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if any(p is None for p in gt.image_paths):
        raise UserError("running a detector needs the image folder (--images or --wider-root)")
    # A folder holding part of the set (a subset downloaded, or the .mat files of the full val
    # split) is scored on the images it holds: scoring the absent ones as "no detections" would
    # give a meaningless, near-zero AP.
    listed = len(gt.keys)
    present = [i for i, path in enumerate(gt.image_paths) if Path(path).is_file()]
    if not present:
        raise UserError(f"none of the {listed} ground-truth images is in the image folder (first: "
                        f"{gt.image_paths[0]}); check --wider-root or --images")
    if len(present) < listed:
        gt = gt.subset(present)
        echo(f"scoring the {len(present)} of {listed} ground-truth images present in the image folder "
             f"(the official protocol restricted to them; the other {listed - len(present)} are absent)")
    log = DetectionLog(out_dir, fingerprint or detector_fingerprint(None, cfg.detection))
    items = list(zip(gt.keys, gt.image_paths))
    detected, skipped = detect_images(cascade, items, cfg.detection.batch_size, "WIDER detection", log)
    pred_dir = out_dir / PREDICTIONS_DIR
    write_predictions(pred_dir, {k: rows for k, (rows, _) in detected.items()})
    results = evaluate_wider_predictions(gt, read_predictions(pred_dir), out_dir, cfg, echo,
                                         images_in_ground_truth=listed)
    if skipped:
        echo(f"  skipped {len(skipped)} unreadable image(s) (first: {skipped[0]})")
    log.finish()
    return results


def load_ground_truth(*, wider_root: str | Path | None = None, split: str = "val",
                      annotations: str | Path | None = None, images: str | Path | None = None,
                      gt_dir: str | Path | None = None, fmt: str = "wider",
                      options: Any = None) -> WiderGroundTruth:
    """Ground truth from the official .mat files (``gt_dir``), an annotation file in any box
    format ``fmt`` (``annotations`` + ``images``; see :mod:`datasets.formats`), or a WIDER root
    and split."""
    from mtcnn_train.datasets.formats import ReadOptions, read_dataset, resolve_format
    from mtcnn_train.datasets.wider import wider_paths

    if annotations is not None and wider_root is not None:
        raise UserError("give either --annotations/--images or --wider-root/--split, not both")
    images_root = Path(images) if images is not None else None
    if wider_root is not None:
        ann_file, images_root = wider_paths(wider_root, split)
        if annotations is None and gt_dir is None:
            annotations = ann_file
    if gt_dir is not None:
        return load_wider_mat(gt_dir, images_root, split if split else "val")
    if annotations is None:
        raise UserError("no ground truth: give --wider-root (with --split), --annotations with --images, or --gt-dir")
    fmt = resolve_format(fmt, annotations)
    if images_root is None and fmt == "wider":
        raise UserError("--annotations needs --images (the folder its image names are relative to)")
    return ground_truth_from_records(read_dataset(fmt, annotations, images_root, options or ReadOptions()))


def evaluate_wider_run(out_dir: str | Path, cfg: Any, *, weights: str | Path | None = None,
                       predictions: str | Path | None = None, wider_root: str | Path | None = None,
                       split: str = "val", annotations: str | Path | None = None, images: str | Path | None = None,
                       gt_dir: str | Path | None = None, stages: str | None = None, backend: str = "torch",
                       echo=print, fmt: str = "wider", options: Any = None) -> dict[str, WiderAP]:
    """``eval wider``: ground truth from any source, predictions from a detector or a folder."""
    if (weights is None) == (predictions is None):
        raise UserError("give exactly one of --weights (run the detector) or --predictions (score a folder)")
    gt = load_ground_truth(wider_root=wider_root, split=split, annotations=annotations, images=images, gt_dir=gt_dir,
                           fmt=fmt, options=options)
    if not gt.keys:
        raise UserError("the ground truth lists no images")
    if predictions is not None:
        if stages is not None:
            raise UserError("--stages picks the cascade's last stage; it does not combine with --predictions")
        read = read_predictions(predictions)
        if not set(read) & set(gt.keys):  # nothing to score: a wrong folder or names that never match
            found = f"its files are named like {next(iter(read))!r}" if read else "it holds no .txt files"
            raise UserError(f"{predictions}: no prediction file matches a ground-truth image ({found}; the ground "
                            f"truth's images are named like {gt.keys[0]!r}, as event/image without .jpg)")
        return evaluate_wider_predictions(gt, read, out_dir, cfg, echo)
    from mtcnn_train.detection.cascade import Cascade

    if stages is None:
        # All the stages the folder holds: P, P+R or P+R+O.
        from mtcnn_train.checkpoint import stage_weights_path
        from mtcnn_train.stages import STAGES

        held = [s for s in STAGES if stage_weights_path(Path(weights), s).is_file()
                or (backend != "torch" and (Path(weights) / f"{s}.onnx").is_file())]
        stages = held[-1] if held else "pnet"
    cascade = Cascade.load(weights, cfg.detection, backend=backend, stages=stages, device=cfg.detection.device)
    fingerprint = {**detector_fingerprint(weights, cfg.detection), "stages": stages, "backend": backend}
    return evaluate_wider_with_detector(cascade, gt, out_dir, cfg, fingerprint, echo)
