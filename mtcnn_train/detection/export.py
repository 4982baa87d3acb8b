"""Export the three nets as ONNX or TorchScript files (``mtcnn-train export``).

Exported models behave exactly like :mod:`mtcnn_train.nets`: input ``image`` is an ``N x 3 x H x W``
float32 tensor already normalised as ``(x - 127.5) / 128`` (RGB), outputs are ``face`` (raw logits,
softmax not applied), ``box`` (offsets) and ``landmarks`` (x1, y1, ..., x5, y5 offsets).

=========  =================================  ==========================================
net        ONNX file / TorchScript file       dynamic axes
=========  =================================  ==========================================
P-Net      ``pnet.onnx`` / ``pnet.torchscript.pt``  batch, height, width (any size >= 12)
R-Net      ``rnet.onnx`` / ``rnet.torchscript.pt``  batch (input 24 x 24)
O-Net      ``onet.onnx`` / ``onet.torchscript.pt``  batch (input 48 x 48)
=========  =================================  ==========================================

ONNX files use opset 17 (:data:`ONNX_OPSET`).  ``export.json`` beside them records the opset,
names, normalisation and the source checkpoints.  Running the exported files is
:mod:`mtcnn_train.detection.onnx_runtime`'s business.
"""
from __future__ import annotations

import io
import warnings
from pathlib import Path
from typing import Any

import torch

from mtcnn_train.checkpoint import load_checkpoint, load_stage_net, stage_weights_path
from mtcnn_train.stages import INPUT_SIZE, STAGES
from mtcnn_train.detection.onnx_runtime import INPUT_NAME, OUTPUT_NAMES, exported_file
from mtcnn_train.errors import UserError
from mtcnn_train.io import atomic_write_bytes, atomic_write_json

ONNX_OPSET = 17
FORMATS = ("onnx", "torchscript")


def _dynamic_axes(stage: str) -> dict[str, dict[int, str]]:
    image_axes = {0: "batch", 2: "height", 3: "width"} if stage == "pnet" else {0: "batch"}
    output_axes = {0: "batch", 2: "out_height", 3: "out_width"} if stage == "pnet" else {0: "batch"}
    return {INPUT_NAME: image_axes, **{name: output_axes for name in OUTPUT_NAMES}}


def _export_onnx(net: torch.nn.Module, stage: str, path: Path) -> None:
    size = INPUT_SIZE[stage]
    # P-Net is traced at a non-square size so no axis is specialised to a constant by accident.
    example = torch.zeros(2, 3, size + 10 if stage == "pnet" else size, size + 22 if stage == "pnet" else size)
    # Exported to memory, then written by our atomic writer: torch's own file writer aborts the
    # process on a full disk (a C++ error, exit 134) and leaves its temp file behind.
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        # The TorchScript-based exporter is deprecated in favour of the dynamo one, which needs
        # onnxscript; these conv nets export exactly with the classic path and no extra package.
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (example,), buffer, input_names=[INPUT_NAME], output_names=list(OUTPUT_NAMES),
                          dynamic_axes=_dynamic_axes(stage), opset_version=ONNX_OPSET, dynamo=False)
    atomic_write_bytes(path, buffer.getvalue())


def _export_torchscript(net: torch.nn.Module, path: Path) -> None:
    buffer = io.BytesIO()
    torch.jit.save(torch.jit.script(net), buffer)  # to memory first, as _export_onnx
    atomic_write_bytes(path, buffer.getvalue())


#: The record every export writes last; a folder holding it was written by ``export``.
EXPORT_RECORD = "export.json"


def refuse_foreign_files(out_dir: Path, names: list[str]) -> None:
    """An export replaces its own earlier files (a folder with ``export.json``), never files it
    did not write: an error naming the first such file."""
    if (out_dir / EXPORT_RECORD).is_file():
        return
    foreign = [out_dir / name for name in names if (out_dir / name).exists()]
    if foreign:
        raise UserError(f"{foreign[0]}: exists and was not written by export; choose another --out or remove it")


def export_models(run_dir: str | Path, fmt: str, out_dir: str | Path, stages: tuple[str, ...] = STAGES) -> dict[str, Any]:
    """Export every stage found in ``run_dir`` in format ``fmt``; returns the ``export.json`` record."""
    if fmt not in FORMATS:
        raise UserError(f"unknown export format {fmt!r}; expected onnx or torchscript")
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    present = [s for s in stages if stage_weights_path(run_dir, s).is_file()]
    if not present:
        raise UserError(f"{run_dir}: no pnet.pt, rnet.pt or onet.pt to export")
    refuse_foreign_files(out_dir, [exported_file(s, fmt) for s in present] + [EXPORT_RECORD])
    out_dir.mkdir(parents=True, exist_ok=True)
    record: dict[str, Any] = {"format": fmt, "input": INPUT_NAME, "outputs": list(OUTPUT_NAMES),
                              "normalisation": "(x - 127.5) / 128, RGB, N x 3 x H x W float32",
                              "opset": ONNX_OPSET if fmt == "onnx" else None, "models": {}}
    for stage in present:
        net = load_stage_net(run_dir, stage).eval()
        target = out_dir / exported_file(stage, fmt)
        if fmt == "onnx":
            _export_onnx(net, stage, target)
        else:
            _export_torchscript(net, target)
        source = load_checkpoint(stage_weights_path(run_dir, stage))
        record["models"][stage] = {"file": target.name, "input_size": INPUT_SIZE[stage],
                                   "dynamic": list(_dynamic_axes(stage)[INPUT_NAME].values()),
                                   "source": str(stage_weights_path(run_dir, stage)),
                                   "source_epoch": int(source.get("epoch", 0))}
        if stage == "pnet":
            # The cascade over the exported nets must decode P-Net's windows as it was trained.
            record["pnet_window"] = str(source.get("window_rule", "reference"))
    atomic_write_json(out_dir / EXPORT_RECORD, record)
    return record
