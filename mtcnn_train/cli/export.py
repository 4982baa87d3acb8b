"""``export``: ONNX and TorchScript models."""
from __future__ import annotations

from pathlib import Path

import click

from mtcnn_train.cli.common import cli, lock_output_dir


@cli.command("export")
@click.option("--weights", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Run folder holding pnet.pt, rnet.pt, onet.pt.")
@click.option("--format", "fmt", type=click.Choice(["onnx", "torchscript"]), required=True)
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True)
def export(weights: Path, fmt: str, out: Path) -> None:
    """Export the nets: P-Net with dynamic batch, height and width; R-Net and O-Net with dynamic batch."""
    from mtcnn_train.detection.export import export_models

    lock_output_dir(out)
    record = export_models(weights, fmt, out)
    for stage, model in record["models"].items():
        click.echo(f"{stage}: {out / model['file']}  (dynamic: {', '.join(model['dynamic'])})")
    if record["opset"]:
        click.echo(f"ONNX opset {record['opset']}; input '{record['input']}' = {record['normalisation']}")
