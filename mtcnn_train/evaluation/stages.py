"""Stage diagnostics: which faces each stage of the cascade keeps, on held-out images.

When R-Net "loses faces", a user needs to see where: after P-Net, after P+R and after P+R+O,
how many of the faces (valid, at least ``detection.min_face_size``) some candidate still covers at
IoU 0.5 and 0.65, how many candidates per image the stage hands on, and the AP (WIDER protocol,
setting ``all``) of the stage's output taken as final detections.  P-Net's recall also depends on
how many candidates it may pass on, so its recall is also given for the best ``k`` candidates per
image, for several ``k`` (:data:`CANDIDATE_BUDGETS`): two P-Nets are compared at equal ``k``.

A stage can also rank badly while keeping the faces: its best-scored boxes may be second boxes
on faces already found (duplicates that survive NMS), which costs AP but not recall.  ``dup@top``
says how much: among the stage's best-scored boxes over all images, as many as there are
annotated faces, the share that overlap an already found face at IoU >= 0.5
(:func:`detection_kinds`).

One pass of the cascade per image gives all stages (:meth:`Cascade.detect_stages`).  The same
figures choose checkpoints during training (:func:`detection_measure`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from mtcnn_train.errors import UserError
from mtcnn_train.stages import STAGES
from mtcnn_train.geometry import iou_matrix

#: IoU levels at which the stages' recall is reported.
RECALL_IOUS = (0.5, 0.65)
#: Candidates per image at which P-Net's and R-Net's recall is also compared.
CANDIDATE_BUDGETS = (10, 25, 50, 100, 200, 400, 800)
#: Display names of the cascade prefixes.
PREFIX_NAMES = {"pnet": "P", "rnet": "P+R", "onet": "P+R+O"}


@dataclass
class StageFigures:
    """What one cascade prefix hands on, summed over a set of images."""

    faces: int = 0
    images: int = 0
    candidates: int = 0
    covered: dict[float, int] = field(default_factory=lambda: {iou: 0 for iou in RECALL_IOUS})
    covered_at_budget: dict[int, int] = field(default_factory=lambda: {k: 0 for k in CANDIDATE_BUDGETS})
    ap: float | None = None
    duplicates_at_top: float | None = None

    def recall(self, iou: float) -> float:
        return self.covered[iou] / self.faces if self.faces else float("nan")

    def recall_at_budget(self, k: int) -> float:
        return self.covered_at_budget[k] / self.faces if self.faces else float("nan")

    def to_json(self) -> dict[str, Any]:
        return {"faces": self.faces, "images": self.images,
                "candidates_per_image": self.candidates / self.images if self.images else None,
                **{f"recall@{iou}": self.recall(iou) for iou in RECALL_IOUS},
                "recall@0.65_at_candidates": {str(k): self.recall_at_budget(k) for k in CANDIDATE_BUDGETS},
                "ap": self.ap, "duplicates_at_top": self.duplicates_at_top}


def counted_faces(boxes: np.ndarray, valid: np.ndarray, min_face_size: float) -> np.ndarray:
    """The faces a stage is expected to find: valid and at least ``min_face_size`` on the shorter side."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    shorter = np.minimum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
    return boxes[np.asarray(valid, bool).reshape(-1) & (shorter >= min_face_size)]


#: Kinds of a detection (:func:`detection_kinds`): a new face found, a second box on a face
#: already found, a near miss (IoU 0.3-0.5 with a face), background.
FOUND, DUPLICATE, NEAR_MISS, BACKGROUND = 0, 1, 2, 3
#: Below this IoU with every face a detection is background (the paper's negative band).
NEAR_MISS_IOU = 0.3


def detection_kinds(boxes: np.ndarray, scores: np.ndarray, faces: np.ndarray, iou: float = 0.5) -> np.ndarray:
    """What each detection of one image is, matched best score first: :data:`FOUND` (IoU >= ``iou``
    with a face no better detection took), :data:`DUPLICATE` (IoU >= ``iou`` only with taken faces),
    :data:`NEAR_MISS` (best IoU :data:`NEAR_MISS_IOU` to ``iou``) or :data:`BACKGROUND`.  In the order of ``boxes``."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    faces = np.asarray(faces, np.float64).reshape(-1, 4)
    kinds = np.full(len(boxes), BACKGROUND, np.int8)
    if not len(boxes) or not len(faces):
        return kinds
    overlap = iou_matrix(boxes, faces)
    taken = np.zeros(len(faces), bool)
    for i in np.argsort(-np.asarray(scores, np.float64), kind="stable"):
        free = np.where(taken, -1.0, overlap[i])
        face, best = int(free.argmax()), overlap[i].max()
        if free[face] >= iou:
            taken[face] = True
            kinds[i] = FOUND
        elif best >= iou:
            kinds[i] = DUPLICATE
        elif best >= NEAR_MISS_IOU:
            kinds[i] = NEAR_MISS
    return kinds


def duplicates_at_top(scores: Sequence[np.ndarray], kinds: Sequence[np.ndarray], faces: int) -> float:
    """Share of duplicates among the ``faces`` best-scored detections of all images together."""
    scores, kinds = np.concatenate([np.zeros(0), *scores]), np.concatenate([np.zeros(0, np.int8), *kinds])
    top = kinds[np.argsort(-scores, kind="stable")[:faces]]
    return float(np.mean(top == DUPLICATE)) if len(top) else float("nan")


def add_image(figures: StageFigures, faces: np.ndarray, candidates: np.ndarray) -> None:
    """Add one image: ``faces`` the counted faces, ``candidates`` the stage's boxes, best first."""
    candidates = np.asarray(candidates, np.float64).reshape(-1, 4)
    figures.images += 1
    figures.faces += len(faces)
    figures.candidates += len(candidates)
    if not len(faces) or not len(candidates):
        return
    overlap = iou_matrix(faces, candidates)
    best = overlap.max(axis=1)
    for iou in RECALL_IOUS:
        figures.covered[iou] += int((best >= iou).sum())
    for k in CANDIDATE_BUDGETS:
        figures.covered_at_budget[k] += int((overlap[:, :k].max(axis=1) >= 0.65).sum())


def stage_average_precision(records: Sequence[Any], outputs: Sequence[Any]) -> float:
    """WIDER-protocol AP (setting ``all``: every valid face) of one stage's boxes and scores."""
    from mtcnn_train.evaluation.wider import ALL_SETTING, evaluate_predictions, ground_truth_from_records

    gt = ground_truth_from_records(records)
    predictions = {}
    for key, dets in zip(gt.keys, outputs):
        boxes = np.asarray(dets.boxes, np.float64).reshape(-1, 4)
        predictions[key] = np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2],
                                           np.asarray(dets.scores, np.float64).reshape(-1, 1)], 1)
    results, _ = evaluate_predictions(gt, predictions)
    return float(results[ALL_SETTING].ap)


def run_stages(cascade: Any, images: Sequence[np.ndarray]) -> list[dict[str, Any]]:
    """Every stage's output on each image (one cascade pass per image)."""
    return [cascade.detect_stages(image) for image in images]


def stage_figures(records: Sequence[Any], per_image: Sequence[dict[str, Any]], min_face_size: float,
                  with_ap: bool = True) -> dict[str, StageFigures]:
    """Figures per cascade prefix from :func:`run_stages`'s output for ``records``' images."""
    stages = [s for s in STAGES if per_image and s in per_image[0]]
    figures = {stage: StageFigures() for stage in stages}
    for record, outputs in zip(records, per_image):
        faces = counted_faces(record.boxes, record.valid, min_face_size)
        for stage in stages:
            add_image(figures[stage], faces, outputs[stage].boxes)
    if with_ap:
        all_faces = sum(len(np.asarray(record.boxes).reshape(-1, 4)) for record in records)
        for stage in stages:
            outputs = [o[stage] for o in per_image]
            figures[stage].ap = stage_average_precision(records, outputs)
            kinds = [detection_kinds(o.boxes, o.scores, record.boxes) for record, o in zip(records, outputs)]
            figures[stage].duplicates_at_top = duplicates_at_top([o.scores for o in outputs], kinds, all_faces)
    return figures


def load_images(records: Sequence[Any], progress: bool = False) -> tuple[list[Any], list[np.ndarray]]:
    """The records whose image loads, and the images (unreadable ones are skipped)."""
    from tqdm import tqdm

    from mtcnn_train.errors import ImageError
    from mtcnn_train.io import load_image

    kept, images = [], []
    for record in tqdm(records, desc="loading images", unit="img", disable=not progress):
        try:
            images.append(load_image(record.image_path))
        except ImageError:
            continue
        kept.append(record)
    return kept, images


def diagnose_runs(runs: dict[str, str | Path], records: Sequence[Any], detection_cfg: Any,
                  progress: bool = True, own_detection: dict[str, Any] | None = None) -> dict[str, dict[str, StageFigures]]:
    """:func:`stage_figures` for each labelled run folder (every stage it has), same images and
    the same faces counted (``detection_cfg.min_face_size``).  ``own_detection`` maps a label to
    the detection settings that run detects with (each cascade at the settings chosen for it),
    else ``detection_cfg``."""
    from tqdm import tqdm

    from mtcnn_train.detection.cascade import Cascade

    for run_dir in runs.values():  # before the images are read: a wrong folder fails at once
        if not any((Path(run_dir) / f"{s}.pt").is_file() for s in STAGES):
            raise UserError(f"{run_dir}: no pnet.pt, rnet.pt or onet.pt to measure")
    records, images = load_images(records, progress)
    out = {}
    for label, run_dir in runs.items():
        present = [s for s in STAGES if (Path(run_dir) / f"{s}.pt").is_file()]
        cascade = Cascade.from_run_dir(run_dir, (own_detection or {}).get(label, detection_cfg), stages=present[-1])
        per_image = [cascade.detect_stages(image) for image in tqdm(images, desc=f"stages: {label}", unit="img",
                                                                      disable=not progress)]
        out[label] = stage_figures(records, per_image, detection_cfg.min_face_size)
    return out


def format_table(results: dict[str, dict[str, StageFigures]]) -> str:
    """One row per run and stage: recall at IoU 0.5 / 0.65, candidates per image, AP, duplicates at the top."""
    head = (f"{'run':<14} {'stages':<6} {'faces':>6} {'recall@0.5':>10} {'recall@0.65':>11} {'cand/img':>9} {'AP':>7} "
            f"{'dup@top':>7}")
    lines = [head, "-" * len(head)]
    for label, figures in results.items():
        for stage, f in figures.items():
            cand = f.candidates / f.images if f.images else float("nan")
            ap = "-" if f.ap is None else f"{f.ap:.4f}"
            dup = "-" if f.duplicates_at_top is None else f"{f.duplicates_at_top:.3f}"
            lines.append(f"{label:<14} {PREFIX_NAMES[stage]:<6} {f.faces:>6} {f.recall(0.5):>10.4f} "
                         f"{f.recall(0.65):>11.4f} {cand:>9.1f} {ap:>7} {dup:>7}")
    return "\n".join(lines)


def plot_stages(path: str | Path, results: dict[str, dict[str, StageFigures]]) -> None:
    """Left: faces kept after P, P+R, P+R+O (recall at IoU 0.5 solid, 0.65 dashed) per run.
    Right: P-Net's recall at IoU 0.65 against the candidates per image it may hand on."""
    from mtcnn_train.evaluation.plots import _figure, _save

    fig = _figure(12.0, 4.8)
    kept, budget = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    for number, (label, figures) in enumerate(results.items()):
        color = f"C{number}"
        names = [PREFIX_NAMES[s] for s in figures]
        kept.plot(names, [f.recall(0.5) for f in figures.values()], "o-", color=color, label=f"{label} IoU 0.5")
        kept.plot(names, [f.recall(0.65) for f in figures.values()], "s--", color=color, label=f"{label} IoU 0.65")
        if "pnet" in figures:
            p = figures["pnet"]
            budget.plot(CANDIDATE_BUDGETS, [p.recall_at_budget(k) for k in CANDIDATE_BUDGETS], "o-", color=color,
                        label=f"{label} P-Net")
    kept.set_ylim(0, 1)
    kept.set_ylabel("faces kept (recall)")
    kept.set_title("faces kept after each stage")
    kept.grid(True, alpha=0.3)
    kept.legend(loc="lower left", fontsize=8)
    budget.set_xscale("log")
    budget.set_ylim(0, 1)
    budget.set_xlabel("P-Net candidates per image (best first)")
    budget.set_ylabel("recall at IoU 0.65")
    budget.set_title("P-Net recall by candidate budget")
    budget.grid(True, alpha=0.3)
    budget.legend(loc="lower right", fontsize=8)
    _save(fig, path)


def write_report(out_dir: str | Path, results: dict[str, dict[str, StageFigures]]) -> str:
    """``stages.json``, ``stages.txt`` (the table) and ``stages.png`` in ``out_dir``; returns the table."""
    from mtcnn_train.io import atomic_write_json, atomic_write_text

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    table = format_table(results)
    atomic_write_json(out_dir / "stages.json", {label: {PREFIX_NAMES[s]: f.to_json() for s, f in figures.items()}
                                                 for label, figures in results.items()})
    atomic_write_text(out_dir / "stages.txt", table + "\n")
    plot_stages(out_dir / "stages.png", results)
    return table


# --------------------------------------------------------------------------------------------
# Checkpoint selection during training

#: Candidates per image at which P-Net and R-Net checkpoints are compared (best first).
SELECTION_BUDGET = {"pnet": 200, "rnet": 25}


def detection_measure(stage: str, figures: dict[str, StageFigures]) -> dict[str, float]:
    """The number an epoch of ``stage`` is chosen by (``score``, higher is better), and what it is.

    P-Net and R-Net: recall at IoU 0.65 within a fixed candidate budget per image
    (:data:`SELECTION_BUDGET`), so a net cannot buy recall by passing everything on.  O-Net: AP.
    """
    f = figures[stage]
    measure = {"recall@0.5": f.recall(0.5), "recall@0.65": f.recall(0.65),
               "candidates_per_image": f.candidates / f.images if f.images else float("nan")}
    if stage == "onet":
        measure["ap"] = float(f.ap) if f.ap is not None else float("nan")
        measure["score"] = measure["ap"]
    else:
        k = SELECTION_BUDGET[stage]
        measure[f"recall@0.65_top{k}"] = f.recall_at_budget(k)
        measure["score"] = measure[f"recall@0.65_top{k}"]
    return measure


def epoch_scorer(stage: str, run_dir: str | Path, records: Sequence[Any], detection_cfg: Any,
                 pnet_window: str = "exact") -> Callable[[Any], dict[str, float]]:
    """A callable ``net -> measure`` that runs the cascade (the earlier stages from ``run_dir``,
    then ``net``) over ``records``' images and gives :func:`detection_measure`.  Images are read once."""
    from mtcnn_train.checkpoint import checkpoint_window_rule, load_stage_net, stage_weights_path
    from mtcnn_train.detection.cascade import Cascade

    records, images = load_images(records)
    earlier = {s: load_stage_net(run_dir, s) for s in STAGES[:STAGES.index(stage)]}
    if stage != "pnet":
        pnet_window = checkpoint_window_rule(stage_weights_path(run_dir, "pnet"))

    def score(net: Any) -> dict[str, float]:
        nets = {**earlier, stage: net}
        cascade = Cascade(nets["pnet"], nets.get("rnet"), nets.get("onet"), cfg=detection_cfg, device="cpu",
                          pnet_window=pnet_window)
        was_training = net.training
        net.eval()
        try:
            per_image = run_stages(cascade, images)
        finally:
            net.train(was_training)
        figures = stage_figures(records, per_image, detection_cfg.min_face_size, with_ap=stage == "onet")
        return detection_measure(stage, figures)

    return score
