"""Detection commands: ``detect`` and ``import-weights``."""
from __future__ import annotations

from pathlib import Path

import click

from mtcnn_train.cli.common import cli, config_options, get_config, lock_output_dir
from mtcnn_train.detection import BACKENDS
from mtcnn_train.stages import STAGES


@cli.command("detect")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--weights", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Run folder holding pnet.pt, rnet.pt, onet.pt (e.g. from import-weights); with "
                   "--backend onnx, a folder of pnet.onnx, rnet.onnx, onet.onnx (from export) also works; "
                   "--backend onnx-int8 needs the folder of export --format onnx --int8.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Folder for detections.json and the annotated images and videos.")
@click.option("--stages", "last_stage", type=click.Choice(STAGES), default="onet", show_default=True,
              help="Stop after this stage (pnet or rnet give the candidates the next stage would see).")
@click.option("--device", default=None, help="cpu, cuda or cuda:N (default: detection.device).")
@click.option("--backend", type=click.Choice(BACKENDS), default="torch", show_default=True,
              help="Run the nets in PyTorch, or in onnxruntime on the CPU (needs the onnx extra; "
                   ".pt weights are exported to OUT/onnx first); onnx-int8 runs the int8 nets of a folder "
                   "written by export --format onnx --int8.")
@click.option("--per-image-json", is_flag=True, help="Also write DIR/<name>.json for each image.")
@click.option("--no-annotate", is_flag=True, help="Write only the JSON, no annotated images or videos.")
@config_options
def detect(paths, weights, out, last_stage, device, backend, per_image_json, no_annotate, config_path,
           overrides) -> None:
    """Detect faces and landmarks in images, folders or a video."""
    from mtcnn_train.detection.detect_files import detect_paths

    cfg = get_config(config_path, overrides)
    lock_output_dir(out)
    summary = detect_paths(paths, weights, out, cfg.detection, last_stage=last_stage, per_image_json=per_image_json,
                           annotate=not no_annotate, device=device or cfg.detection.device, backend=backend,
                           echo=click.echo)
    done = f"{summary.faces} faces in {summary.images} images"
    if summary.videos:
        done += f" and {summary.frames} frames of {summary.videos} videos"
    click.echo(f"{done}; results in {summary.output}")
    if summary.skipped:
        click.echo(f"skipped {len(summary.skipped)} unreadable files (listed in {summary.output}); first: "
                   f"{summary.skipped[0]['error']}", err=True)


@cli.command("import-weights")
@click.option("--from", "source", type=click.Choice(["facenet-pytorch"]), required=True,
              help="Where the weights come from.")
@click.argument("path", required=False, type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Run folder to write pnet.pt, rnet.pt, onet.pt into.")
@click.option("--force", is_flag=True, help="Replace pnet.pt, rnet.pt, onet.pt already in --out.")
def import_weights(source, path, out, force) -> None:
    """Convert the published MTCNN weights into our checkpoints.

    PATH is the folder holding facenet-pytorch's pnet.pt, rnet.pt and onet.pt (default: the
    installed package's data folder).
    """
    from mtcnn_train.detection.weights_import import import_facenet_weights

    lock_output_dir(out)
    written = import_facenet_weights(path, out, force=force)
    click.echo(f"wrote {', '.join(str(p) for p in written)}")
