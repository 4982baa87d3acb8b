"""Evaluation commands: ``eval fddb``, ``eval wider``, ``eval landmarks``, ``eval stages`` and ``eval thresholds``."""
from __future__ import annotations

from pathlib import Path

import click

from mtcnn_train.cli.common import cli, config_options, get_config, prepare_output_dir
from mtcnn_train.datasets.formats import BOX_FORMATS
from mtcnn_train.detection import BACKENDS
from mtcnn_train.errors import UserError
from mtcnn_train.stages import STAGES

_DIR = click.Path(file_okay=False, path_type=Path)
_FILE = click.Path(dir_okay=False, path_type=Path)


@cli.group("eval")
def eval_group() -> None:
    """Score a detector on FDDB (official protocol), WIDER FACE (average precision) or landmark lists."""


def _given(**options) -> list[str]:
    return [f"--{name.replace('_', '-')}" for name, value in options.items() if value not in (None, False, (), [])]


@eval_group.command("fddb")
@click.option("--fddb-root", type=_DIR, help="Folder with FDDB-folds/ and originalPics/ (default: data.fddb_root).")
@click.option("--weights", type=_DIR, help="Run folder with the trained cascade: detect, then score.")
@click.option("--backend", type=click.Choice(BACKENDS), default="torch", show_default=True,
              help="With --weights: run the nets in PyTorch (a run folder), or in onnxruntime from an export "
                   "folder: onnx (export --format onnx) or onnx-int8 (export --format onnx --int8).")
@click.option("--folds", default=None, metavar="SPEC", help="Folds to evaluate: 1-10 (default), 2, 1,3,5-7.")
@click.option("--box-to-ellipse/--no-box-to-ellipse", "box_to_ellipse", default=None,
              help="Also score the boxes turned into ellipses (default: evaluation.box_to_ellipse).")
@click.option("--detections", type=_FILE, help="Score this detection file (official FDDB layout) instead: against "
                                               "--fddb-root's --folds, or the official -a/-l/-i trio below.")
@click.option("--annotations", type=_FILE, help="FDDB ellipse list for --detections (official -a).")
@click.option("--image-list", type=_FILE, help="Images to score, one name per line (official -l).")
@click.option("--images", type=_DIR, help="Folder holding NAME.jpg for each listed image (official -i).")
@click.option("--ellipse", is_flag=True, help="--detections holds ellipses 'major minor angle cx cy score'.")
@click.option("--compare", multiple=True, type=_FILE, metavar="DISCROC",
              help="Other runs' DiscROC files to draw on the same ROC plot (--compare A.txt B.txt ...).")
@click.argument("more_compare", nargs=-1, type=_FILE, metavar="")
@click.option("--label", default=None, help="Name of this run's curve on the ROC plot (default: rectangles, "
                                            "or the --detections file's name); compared curves are named "
                                            "by their folders.")
@click.option("--matching", type=click.Choice(["official", "optimal"]), default="official", show_default=True,
              help="Face-detection matching. official: the published evaluate program's Hungarian solver, "
                   "reproduced exactly, so the numbers are the published program's (it sometimes misses the "
                   "largest total overlap). optimal: the true maximum-overlap matching (SciPy).")
@click.option("--out", type=_DIR, required=True, help="Output folder (DiscROC.txt, ContROC.txt, roc.png, ...).")
@config_options
def eval_fddb(fddb_root, weights, backend, folds, box_to_ellipse, detections, annotations, image_list, images, ellipse,
              compare, more_compare, label, matching, out, config_path, overrides) -> None:
    """FDDB ROC, scored exactly like the official evaluate program."""
    from mtcnn_train.evaluation import fddb

    if more_compare and not compare:
        raise UserError(f"unexpected argument {more_compare[0]} (did you mean --compare {more_compare[0]}?)")
    cfg = get_config(config_path, overrides)
    ev = cfg.evaluation
    if detections is not None:
        if weights is not None:
            raise UserError("--detections scores a file; it does not combine with --weights")
        if box_to_ellipse:
            raise UserError("--box-to-ellipse applies to --weights; for a file of ellipses use --ellipse")
        official = _given(annotations=annotations, image_list=image_list, images=images)
        common = dict(ellipse=ellipse, compare=list(compare) + list(more_compare), overlap=ev.fddb_overlap,
                      fp_points=ev.fp_points, echo=click.echo, matching=matching, label=label)
        if fddb_root is not None or folds is not None:  # the folds say which images and faces
            if official:
                raise UserError(f"--detections with --fddb-root/--folds takes the images and faces from the folds; "
                                f"drop {', '.join(official)}")
            root = fddb_root or cfg.resolve_path(cfg.data.fddb_root)
            if root is None:
                raise UserError("--folds needs --fddb-root (or data.fddb_root in the config)")
            out = prepare_output_dir(out, force=False)
            fddb.evaluate_fddb_file_on_folds(detections, root, out, folds=folds, **common)
            return
        missing = [f"--{n}" for n, v in (("annotations", annotations), ("image-list", image_list), ("images", images))
                   if v is None]
        if missing:
            raise UserError(f"--detections needs {', '.join(missing)} (the official -a, -l, -i), "
                            "or --fddb-root [--folds] to score against FDDB's folds")
        out = prepare_output_dir(out, force=False)
        fddb.evaluate_fddb_file(detections, annotations, image_list, images, out, **common)
        return
    if weights is None:
        raise UserError("give --weights RUN_DIR (detect and score) or --detections FILE (score a file)")
    clash = _given(annotations=annotations, image_list=image_list, images=images, ellipse=ellipse)
    if clash:
        raise UserError(f"{', '.join(clash)} belong to --detections; with --weights use --fddb-root")
    root = fddb_root or cfg.resolve_path(cfg.data.fddb_root)
    if root is None:
        raise UserError("--weights needs --fddb-root (or data.fddb_root in the config)")
    out = prepare_output_dir(out, force=False)
    fddb.evaluate_fddb_run(weights, root, out, cfg, folds=folds, box_to_ellipse=box_to_ellipse, echo=click.echo,
                           matching=matching, compare=list(compare) + list(more_compare), backend=backend,
                           label=label)


@eval_group.command("wider")
@click.option("--wider-root", type=_DIR, help="WIDER FACE folder (wider_face_split/, WIDER_<split>/images/).")
@click.option("--split", default="val", show_default=True, help="Split under --wider-root.")
@click.option("--annotations", type=click.Path(path_type=Path),
              help="Ground truth in any box format (instead of --wider-root): a WIDER-format list, COCO .json, "
                   "YOLO folder/list/data.yaml or VOC folder.")
@click.option("--format", "fmt", type=click.Choice(("auto",) + BOX_FORMATS), default="auto", show_default=True,
              help="Format of --annotations (auto: told from the path).")
@click.option("--images", type=_DIR, help="Folder the --annotations image names are relative to "
                                          "(needed for WIDER lists; other formats have a default).")
@click.option("--gt-dir", type=_DIR, help="Folder with the official wider_face_val.mat and wider_{easy,medium,"
                                          "hard}_val.mat: score the easy/medium/hard settings.")
@click.option("--weights", type=_DIR, help="Run folder with the trained cascade: detect, then score.")
@click.option("--backend", type=click.Choice(BACKENDS), default="torch", show_default=True,
              help="With --weights: run the nets in PyTorch (a run folder), or in onnxruntime from an export "
                   "folder: onnx (export --format onnx) or onnx-int8 (export --format onnx --int8).")
@click.option("--predictions", type=_DIR, help="Score an existing prediction folder (<event>/<image>.txt).")
@click.option("--stages", "last_stage", type=click.Choice(STAGES), default=None,
              help="With --weights: score the cascade up to this stage (P, P+R or P+R+O; default: all it has).")
@click.option("--out", type=_DIR, required=True, help="Output folder (predictions/, ap.json, pr_curve.png).")
@config_options
def eval_wider(wider_root, split, annotations, fmt, images, gt_dir, weights, backend, predictions, last_stage, out, config_path,
               overrides) -> None:
    """WIDER FACE average precision (official protocol), on WIDER or any box-format ground truth."""
    from mtcnn_train.datasets.formats import ReadOptions
    from mtcnn_train.evaluation import wider

    cfg = get_config(config_path, overrides)
    if wider_root is None and annotations is None and cfg.data.wider_root is not None:
        wider_root = cfg.resolve_path(cfg.data.wider_root)
    out = prepare_output_dir(out, force=False)
    wider.evaluate_wider_run(out, cfg, weights=weights, predictions=predictions, wider_root=wider_root, split=split,
                             annotations=annotations, images=images, gt_dir=gt_dir, stages=last_stage, backend=backend,
                             echo=click.echo, fmt=fmt, options=ReadOptions.from_config(cfg))


@eval_group.command("landmarks")
@click.option("--weights", type=_DIR, required=True, help="Run folder with pnet.pt, rnet.pt and onet.pt.")
@click.option("--annotations", type=_FILE, required=True,
              help="Landmark list: MTFL crops (e.g. new_testing.txt, AFLW), LFW+Net or CelebA.")
@click.option("--format", "fmt", type=click.Choice(["auto", "celeba", "celeba-aligned", "lfw-net", "mtfl"]),
              default="auto", show_default=True, help="Format of --annotations.")
@click.option("--images", type=_DIR, help="Folder the image names are relative to (default: per format).")
@click.option("--min-iou", type=click.FloatRange(0, 1), default=0.4, show_default=True,
              help="A detection scores a face when its IoU with the face's reference box reaches this.")
@click.option("--label", help="Name on the plot (default: the weights folder's name).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.option("--out", type=_DIR, required=True, help="Output folder (landmarks.json, ced.png).")
@config_options
def eval_landmarks(weights, annotations, fmt, images, min_iou, label, quiet, out, config_path, overrides) -> None:
    """Landmark error normalised by the inter-ocular distance (mean, failures > 0.1, CED plot)."""
    from mtcnn_train.evaluation.landmarks import evaluate_landmarks_run

    cfg = get_config(config_path, overrides)
    out = prepare_output_dir(out, force=False)
    evaluate_landmarks_run(weights, annotations, out, cfg, fmt=fmt, images_root=images, min_iou=min_iou,
                           label=label, progress=not quiet, echo=click.echo)


@eval_group.command("stages")
@click.option("--weights", "runs", multiple=True, required=True, metavar="[LABEL=]RUN_DIR",
              help="Run folder to diagnose (repeatable: ours beside e.g. the imported published weights).")
@click.option("--run-config", "run_configs", multiple=True, metavar="LABEL=CONFIG",
              help="That run detects with the detection settings of CONFIG (repeatable), e.g. "
                   "published=configs/default.yaml beside ours at --config's: each cascade at its own settings.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.option("--out", type=_DIR, required=True, help="Output folder (stages.txt, stages.json, stages.png).")
@config_options
def eval_stages(runs, run_configs, quiet, out, config_path, overrides) -> None:
    """Faces kept after P, P+R and P+R+O on the held-out WIDER images of the config (data.val_fraction):
    recall at IoU 0.5 / 0.65, candidates per image, AP, and P-Net's recall by candidate budget."""
    from mtcnn_train.evaluation.stages import diagnose_runs, write_report
    from mtcnn_train.pipeline import validation_records

    cfg = get_config(config_path, overrides)
    labelled = {}
    for text in runs:
        label, _, folder = text.rpartition("=")
        folder_path = Path(folder)
        if not folder_path.is_dir():
            raise UserError(f"{folder}: run folder not found")
        label = label or folder_path.name
        if label in labelled:  # two runs under one name would collapse into one row
            raise UserError(f"--weights {text}: the label {label!r} is given twice; name the runs LABEL=RUN_DIR")
        labelled[label] = folder_path
    own_detection = {}
    for text in run_configs:
        label, sep, config_file = text.partition("=")
        if not sep or label not in labelled:
            raise UserError(f"--run-config {text}: expected LABEL=CONFIG with a LABEL given to --weights "
                            f"({', '.join(labelled)})")
        own_detection[label] = get_config(config_file, ()).detection
    out = prepare_output_dir(out, force=False)
    results = diagnose_runs(labelled, validation_records(cfg), cfg.detection, progress=not quiet,
                            own_detection=own_detection)
    click.echo(write_report(out, results))
    click.echo(f"wrote {out / 'stages.txt'}, {out / 'stages.json'} and {out / 'stages.png'}")


@eval_group.command("thresholds")
@click.option("--weights", type=_DIR, required=True, help="Run folder with pnet.pt, rnet.pt and onet.pt.")
@click.option("--pnet", "pnet_values", default="0.6,0.5,0.4", show_default=True, metavar="T,T,...",
              help="P-Net thresholds to try.")
@click.option("--rnet", "rnet_values", default="0.7,0.3,0.1", show_default=True, metavar="T,T,...",
              help="R-Net thresholds to try.")
@click.option("--onet", "onet_values", default="0.7,0.1,0", show_default=True, metavar="T,T,...",
              help="O-Net thresholds to try (free: one cascade pass per P, R pair serves them all).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.option("--out", type=_DIR, required=True, help="Output folder (thresholds.txt, thresholds.json).")
@config_options
def eval_thresholds(weights, pnet_values, rnet_values, onet_values, quiet, out, config_path, overrides) -> None:
    """Choose the cascade's thresholds on the held-out WIDER images of the config (data.val_fraction):
    the P+R+O AP, recall and candidates per image for every threshold set of the grid, best AP first.
    Score test sets with the best set (--set 'detection.thresholds=[P,R,O]'), never choose on them."""
    from mtcnn_train.evaluation.thresholds import parse_grid_values, sweep_thresholds, write_report
    from mtcnn_train.pipeline import validation_records

    cfg = get_config(config_path, overrides)
    grid = [parse_grid_values(text, stage) for text, stage in
            ((pnet_values, "--pnet"), (rnet_values, "--rnet"), (onet_values, "--onet"))]
    if not weights.is_dir():
        raise UserError(f"{weights}: run folder not found")
    out = prepare_output_dir(out, force=False)
    scores = sweep_thresholds(weights, validation_records(cfg), cfg.detection, grid, progress=not quiet)
    click.echo(write_report(out, scores))
    best = ",".join(f"{t:g}" for t in scores[0].thresholds)
    click.echo(f"best on the validation images: --set 'detection.thresholds=[{best}]' (AP {scores[0].ap:.4f})")
    click.echo(f"wrote {out / 'thresholds.txt'} and {out / 'thresholds.json'}")
