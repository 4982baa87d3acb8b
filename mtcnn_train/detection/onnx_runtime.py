"""Exported ONNX nets run by onnxruntime inside the cascade, and the file facts both sides share.

:class:`OnnxNet` wraps an exported file with onnxruntime (the ``onnx`` extra) so the same
:class:`~mtcnn_train.detection.cascade.Cascade` code runs on it:

===========================================================  =====================================================
call                                                         gives
===========================================================  =====================================================
``export_models(run_dir, "onnx", out_dir)``                  ``out_dir/{pnet,rnet,onet}.onnx`` and ``export.json``
``OnnxNet(path, threads=0)``                                 one net: ``net(x) -> (face, box, landmarks)``
``load_onnx_nets(export_dir, stages, threads=0)``            ``{"pnet": OnnxNet, ...}`` for the files present
``Cascade.from_onnx_dir(export_dir, cfg, stages, threads)``  the whole cascade on onnxruntime (CPU only)
``mtcnn-train detect ... --backend onnx``                    the same from the command line
``export_int8(run_dir, out_dir, calibration)``               int8 R-Net and O-Net (:mod:`.quantize`), run the same
                                                             way (``--backend onnx-int8``)
===========================================================  =====================================================

In the ONNX cascade only the nets run in onnxruntime; the pyramid, crops and NMS are the same
torch code as the PyTorch cascade (on the CPU), so both give the same detections up to float
rounding in the nets (tests/detection/test_onnx_cascade.py).  ``threads`` sets onnxruntime's
intra-op threads (0: its default, one per physical core); torch's own threads are set with
``torch.set_num_threads``.  onnxruntime itself is imported only when a net is loaded.
"""
from __future__ import annotations

import json
import platform
import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mtcnn_train.errors import MtcnnWarning, UserError, first_line
from mtcnn_train.stages import STAGES

INPUT_NAME = "image"
OUTPUT_NAMES = ("face", "box", "landmarks")


def exported_file(stage: str, fmt: str) -> str:
    return f"{stage}.onnx" if fmt == "onnx" else f"{stage}.torchscript.pt"


def read_export_record(export_dir: str | Path) -> dict[str, Any] | None:
    """``EXPORT_DIR/export.json`` as written by ``export`` (None when absent or not an object)."""
    path = Path(export_dir) / "export.json"
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise UserError(f"{path}: cannot read ({exc})") from None
    return record if isinstance(record, dict) else None


def exported_window_rule(export_dir: str | Path) -> str:
    """The P-Net window rule recorded in ``export.json`` (``reference`` when absent)."""
    record = read_export_record(export_dir)
    return str(record.get("pnet_window", "reference")) if record is not None else "reference"


def is_int8_export(export_dir: str | Path) -> bool:
    """Whether ``export.json`` says the folder was written by ``export --format onnx --int8``."""
    record = read_export_record(export_dir)
    return record is not None and isinstance(record.get("int8"), dict)


def int8_weight_bits(export_dir: str | Path) -> int | None:
    """Bits of range the int8 weights of an ``export --int8`` folder use (None: not an int8 export).
    Exports from before the 7-bit default record just ``"int8"``: those are full-range, 8 bits."""
    record = read_export_record(export_dir)
    info = record.get("int8") if record is not None else None
    if not isinstance(info, dict):
        return None
    bits = re.search(r"(\d+)-bit", str(info.get("weights", "")))
    return int(bits.group(1)) if bits else 8


def cpu_has_vnni(cpuinfo: str | Path = "/proc/cpuinfo", machine: str | None = None) -> bool | None:
    """Whether this x86 CPU has VNNI (AVX-512 VNNI or AVX-VNNI), read from ``cpuinfo``'s flags;
    None where that cannot be told (another architecture, no such file, no flags in it)."""
    if (machine or platform.machine()).lower() not in ("x86_64", "amd64"):
        return None
    try:
        text = Path(cpuinfo).read_text()
    except OSError:
        return None
    flags = {flag for line in text.splitlines() if line.startswith("flags") for flag in line.split(":", 1)[-1].split()}
    if not flags:
        return None
    return bool(flags & {"avx512_vnni", "avx_vnni"})


def warn_if_int8_weights_overflow(export_dir: str | Path) -> None:
    """Warn when full-range int8 weights meet a CPU without VNNI: onnxruntime's uint8 x int8 kernels
    there add pairs of products in 16 bits, which such weights overflow (the published weights lost
    0.066 AP that way, docs/RESULTS.md "7-bit weights")."""
    if int8_weight_bits(export_dir) == 8 and cpu_has_vnni() is False:
        warnings.warn(MtcnnWarning(
            f"{export_dir}: its int8 weights use all 8 bits, which onnxruntime computes wrongly on a CPU "
            "without VNNI like this one (faces lost); export again with the default 7-bit weights"), stacklevel=2)


def require_onnxruntime() -> Any:
    """The ``onnxruntime`` module, or a one-line :class:`UserError` saying how to install it."""
    try:
        import onnxruntime
    except ImportError:
        raise UserError("the onnx backend needs onnxruntime: pip install 'mtcnn-train[onnx]'") from None
    return onnxruntime


class OnnxNet:
    """An exported ONNX net that the cascade can call like the PyTorch module.

    Takes and returns torch tensors (CPU); runs on onnxruntime's CPU provider unless told otherwise.
    """

    def __init__(self, path: str | Path, providers: list[str] | None = None, threads: int = 0) -> None:
        ort = require_onnxruntime()
        path = Path(path)
        if not path.is_file():
            raise UserError(f"{path}: ONNX model not found")
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(str(path), options, providers=providers or ["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types
            raise UserError(f"{path}: not a loadable ONNX model ({first_line(exc)})") from None
        self.path = path

    def __call__(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        device = images.device
        feed = {INPUT_NAME: np.ascontiguousarray(images.detach().cpu().numpy(), dtype=np.float32)}
        outputs = self.session.run(list(OUTPUT_NAMES), feed)
        return tuple(torch.from_numpy(o).to(device) for o in outputs)

    # The cascade treats nets as modules; these keep that interface.
    def eval(self) -> "OnnxNet":
        return self

    def to(self, *args: Any, **kwargs: Any) -> "OnnxNet":
        return self


def load_onnx_nets(export_dir: str | Path, stages: tuple[str, ...] = STAGES, threads: int = 0) -> dict[str, OnnxNet]:
    export_dir = Path(export_dir)
    nets = {}
    for stage in stages:
        path = export_dir / exported_file(stage, "onnx")
        if path.is_file():
            nets[stage] = OnnxNet(path, threads=threads)
    if "pnet" not in nets:
        raise UserError(f"{export_dir}: no pnet.onnx (run mtcnn-train export --format onnx first)")
    return nets
