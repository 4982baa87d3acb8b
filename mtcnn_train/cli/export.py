"""``export``: ONNX and TorchScript models, and int8 ONNX models (``--int8``)."""
from __future__ import annotations

from pathlib import Path

import click

from mtcnn_train.cli.common import cli, lock_output_dir
from mtcnn_train.errors import UserError


@cli.command("export")
@click.option("--weights", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Run folder holding pnet.pt, rnet.pt, onet.pt.")
@click.option("--format", "fmt", type=click.Choice(["onnx", "torchscript"]), required=True)
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True)
@click.option("--int8", is_flag=True,
              help="With --format onnx: quantise the --int8-nets to int8 (onnxruntime static quantisation, "
                   "per-channel weights) with crops from the --calibration sample folders.")
@click.option("--calibration", multiple=True, type=click.Path(path_type=Path), metavar="DIR",
              help="With --int8: a sample folder from gen-samples (or a run's samples/ folder holding them), "
                   "cut from training images; each net calibrates on the sets of its crop size.  Repeatable.")
@click.option("--int8-nets", default="rnet,onet", show_default=True, metavar="NETS",
              help="With --int8: the nets to quantise (comma-separated; the others stay fp32).  P-Net is "
                   "slower in int8 than in fp32 on onnxruntime, so it stays fp32 by default.")
@click.option("--calibration-count", type=click.IntRange(min=1), default=1000, show_default=True,
              help="With --int8: calibration crops per quantised net (a seeded random pick).")
@click.option("--calibration-method", type=click.Choice(["auto", "minmax", "percentile"]), default="auto",
              show_default=True, help="With --int8: activation ranges from the extremes of the calibration "
                                      "values (minmax) or their 99.99th percentile; auto: each net's choice "
                                      "(minmax for P-Net and R-Net, percentile for O-Net).")
@click.option("--int8-weight-bits", type=click.Choice(["7", "8"]), default="7", show_default=True,
              help="With --int8: bits of range the int8 weights use.  8 overflows onnxruntime's kernels on "
                   "CPUs without VNNI (AVX2, plain AVX-512); use it only where every target CPU has VNNI.")
def export(weights: Path, fmt: str, out: Path, int8: bool, calibration: tuple[Path, ...], int8_nets: str,
           calibration_count: int, calibration_method: str, int8_weight_bits: str) -> None:
    """Export the nets: P-Net with dynamic batch, height and width; R-Net and O-Net with dynamic batch."""
    from mtcnn_train.detection.export import export_models

    if int8 and fmt != "onnx":
        raise UserError("--int8 needs --format onnx")
    if not int8 and calibration:
        raise UserError("--calibration belongs to --int8")
    lock_output_dir(out)
    if int8:
        from mtcnn_train.quantize import export_int8

        record = export_int8(weights, out, calibration, int8_stages=int8_nets, count=calibration_count,
                             method=None if calibration_method == "auto" else calibration_method,
                             weight_bits=int(int8_weight_bits))
    else:
        record = export_models(weights, fmt, out)
    for stage, model in record["models"].items():
        precision = f", {model['precision']}" if "precision" in model else ""
        click.echo(f"{stage}: {out / model['file']}  (dynamic: {', '.join(model['dynamic'])}{precision})")
    if record["opset"]:
        click.echo(f"ONNX opset {record['opset']}; input '{record['input']}' = {record['normalisation']}")
