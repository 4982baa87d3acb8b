"""INT8 nets: post-training static quantisation of the exported ONNX nets (``export --format onnx --int8``).

===========================================================================  ==========================================
call                                                                         gives
===========================================================================  ==========================================
``export_int8(run_dir, out_dir, calibration_dirs, int8_stages)``             ``out_dir/{pnet,rnet,onet}.onnx`` (the
                                                                             ``int8_stages`` quantised) and ``export.json``
``Cascade.load(out_dir, cfg, backend="onnx-int8")``                          the cascade over them (onnxruntime, CPU)
``mtcnn-train detect / eval wider / eval fddb ... --backend onnx-int8``      the same from the command line
===========================================================================  ==========================================

Toolkit: onnxruntime's ``quantize_static``, **QOperator** format (``QLinearConv``, ``QLinearMatMul``
... kernels), weights int8 per output channel, activations uint8 per tensor, ranges from the extremes of the
calibration activations (R-Net) or their 99.99th percentile (O-Net), :data:`DEFAULT_METHODS`.
Chosen by measurement on the development CPU (AMD EPYC, avx512_vnni; one thread), against
onnxruntime's QDQ format and PyTorch's ``torch.ao`` FX quantisation (x86 engine); docs/BENCHMARKS.md
has the table.  onnxruntime in fp32 is already 1.8-8x faster than eager PyTorch on these small
nets, and its QOperator int8 R-Net and O-Net are faster still; its int8 P-Net is slower than its
fp32 one (P-Net's 10- and 16-channel convolutions are too thin for the int8 kernels to pay, and
every PReLU, which has no quantised kernel, costs a dequantise/quantise pair), so P-Net stays fp32
by default (:data:`DEFAULT_INT8_STAGES`).

Weights use 7 of their 8 bits by default (onnxruntime's ``reduce_range``): without VNNI (AVX2 and
plain AVX-512 CPUs) onnxruntime's uint8 x int8 kernels add pairs of products in 16 bits, which
full-range weights overflow; on such a CPU (the CI machine) full-range int8 R-Net and O-Net were
5-7x further from fp32 than 7-bit ones.  A file quantised once must run right on any CPU, so 7 bits
is the default, and ``weight_bits=8`` is for CPUs known to have VNNI.

Calibration inputs are crops from sample sets (``gen-samples`` / the pipeline's ``samples/``
folders), cut from the *training* images: R-Net and O-Net see at detection time exactly such crops
(candidate windows cut and area-resized to 24 / 48 px), and the sample sets of a stage are mined
with the earlier stages, so their mix of faces, parts and background is what the net meets in the
cascade.  P-Net, when quantised, is calibrated on 12 x 12 crops: it is fully convolutional with a
12 x 12 receptive field at stride 2, so the activations it computes on a pyramid level are those of
the level's 12 x 12 windows.  Each calibration folder is a sample set, or a folder holding sample
sets (``RUN/samples`` with ``pnet/``, ``rnet/``, ``onet/``); a stage takes the sets whose crop size
is its input size.  ``export.json`` records per net ``precision`` (``int8`` / ``fp32``) and under
``int8`` the toolkit, its settings and the calibration sources and counts.
"""
from __future__ import annotations

import contextlib
import io
import logging
import tempfile
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from mtcnn_train.checkpoint import stage_weights_path
from mtcnn_train.detection.export import export_models
from mtcnn_train.detection.onnx_runtime import INPUT_NAME, exported_file, require_onnxruntime
from mtcnn_train.errors import UserError, first_line
from mtcnn_train.io import atomic_write_bytes, atomic_write_json
from mtcnn_train.samples.shards import MANIFEST, SampleSet
from mtcnn_train.stages import INPUT_SIZE, STAGES, check_stage

#: Nets quantised unless told otherwise: int8 P-Net is slower than fp32 P-Net in onnxruntime.
DEFAULT_INT8_STAGES = ("rnet", "onet")
#: Bits of range the int8 weights use; 7 avoids the 16-bit overflow of onnxruntime's non-VNNI kernels.
WEIGHT_BITS = (7, 8)
DEFAULT_WEIGHT_BITS = 7
#: Calibration crops per quantised net (a seeded random pick over its sample sets).
DEFAULT_CALIBRATION_COUNT = 1000
#: How activation ranges are set from the calibration data: ``minmax`` keeps the extremes seen,
#: ``percentile`` clips each tensor's range to the central 99.99% of the values seen.
CALIBRATION_METHODS = ("minmax", "percentile")
#: Each net's method unless told otherwise, chosen on the WIDER validation split with the published
#: weights (docs/RESULTS.md, "Issue 21: int8"): percentile halves O-Net's output error and its AP
#: cost, while for R-Net it lowers the error on average crops but costs AP (clipping its largest
#: activations, which the clearest faces produce); onnxruntime's ``entropy`` gave minmax's figures.
DEFAULT_METHODS = {"pnet": "minmax", "rnet": "minmax", "onet": "percentile"}
PERCENTILE = 99.99
#: Crops per onnxruntime calibration batch.
_CALIBRATION_BATCH = 100


def parse_int8_stages(text: str | Sequence[str]) -> tuple[str, ...]:
    """``"rnet,onet"`` (or a sequence) as stage names in cascade order; ``"none"`` gives ``()``."""
    names = [t.strip() for t in (text.split(",") if isinstance(text, str) else text) if t.strip()]
    if names == ["none"]:
        return ()
    for name in names:
        check_stage(name)
    return tuple(s for s in STAGES if s in names)


def _sample_set_dirs(folder: Path) -> list[Path]:
    """``folder`` itself when it is a sample set, else its sample-set subfolders (sorted)."""
    if not folder.is_dir():
        raise UserError(f"{folder}: calibration folder not found")
    if (folder / MANIFEST).is_file():
        return [folder]
    found = sorted(p for p in folder.iterdir() if (p / MANIFEST).is_file())
    if not found:
        raise UserError(f"{folder}: not a sample set (no {MANIFEST}) and holds none; give gen-samples output folders")
    return found


def calibration_sets(folders: Iterable[str | Path]) -> dict[int, list[Path]]:
    """The sample sets under ``folders`` grouped by crop size."""
    by_size: dict[int, list[Path]] = {}
    folders = [Path(f) for f in folders]
    if not folders:
        raise UserError("int8 export needs calibration crops: give --calibration with a sample folder "
                        "(gen-samples output, or a run's samples/ folder)")
    for folder in folders:
        for directory in _sample_set_dirs(folder):
            size = SampleSet.open(directory).crop_size
            by_size.setdefault(size, []).append(directory)
    return by_size


def calibration_inputs(directories: Sequence[Path], count: int = DEFAULT_CALIBRATION_COUNT, seed: int = 0) -> np.ndarray:
    """``count`` crops picked at random (seeded) over the sample sets, as the nets' input: float32
    ``N x 3 x S x S``, normalised ``(x - 127.5) / 128``."""
    samples = SampleSet.open(directories)
    total = len(samples)
    if total == 0:
        raise UserError(f"{', '.join(map(str, directories))}: no crops to calibrate with")
    pick = np.sort(np.random.default_rng(seed).choice(total, size=min(count, total), replace=False))
    crops, start = [], 0
    for shard in samples.shards:
        n = len(shard["labels"])
        local = pick[(pick >= start) & (pick < start + n)] - start
        if len(local):
            crops.append(np.asarray(shard["images"][local]))
        start += n
    images = np.concatenate(crops).astype(np.float32)  # N x S x S x 3 RGB uint8 values
    return np.ascontiguousarray(((images - 127.5) / 128.0).transpose(0, 3, 1, 2))


class _Reader:
    """onnxruntime's calibration data reader over an array of inputs, in batches."""

    def __init__(self, inputs: np.ndarray) -> None:
        self.batches = iter([{INPUT_NAME: inputs[i:i + _CALIBRATION_BATCH]}
                             for i in range(0, len(inputs), _CALIBRATION_BATCH)])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self.batches, None)

    def rewind(self) -> None:  # part of onnxruntime's reader interface; calibration reads once
        pass


def check_weight_bits(weight_bits: int) -> None:
    if weight_bits not in WEIGHT_BITS:
        raise UserError(f"int8 weights use 7 or 8 bits of range, not {weight_bits}")


def quantize_onnx_net(source: Path, target: Path, inputs: np.ndarray, method: str = "minmax",
                      weight_bits: int = DEFAULT_WEIGHT_BITS) -> None:
    """``source`` (fp32 ONNX) quantised statically with ``inputs`` as calibration data into ``target``,
    weights in ``weight_bits`` (7: safe on every CPU, 8: only where onnxruntime has VNNI kernels)."""
    require_onnxruntime()
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    if method not in CALIBRATION_METHODS:
        raise UserError(f"unknown calibration method {method!r}; expected one of {', '.join(CALIBRATION_METHODS)}")
    check_weight_bits(weight_bits)
    calibrate = {"minmax": (CalibrationMethod.MinMax, {}),
                 "percentile": (CalibrationMethod.Percentile, {"CalibPercentile": PERCENTILE})}[method]

    with tempfile.TemporaryDirectory(prefix="mtcnn-int8-") as work:
        out = Path(work) / "int8.onnx"
        try:
            # The histogram calibrators print progress, and onnxruntime logs advice about its
            # pre-processing step (shape inference, which these small static graphs do not need).
            logging.disable(logging.WARNING)
            with contextlib.redirect_stdout(io.StringIO()):
                quantize_static(str(source), str(out), _Reader(inputs), quant_format=QuantFormat.QOperator,
                                per_channel=True, reduce_range=weight_bits == 7,
                                activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                                calibrate_method=calibrate[0], extra_options=calibrate[1])
        except Exception as exc:  # onnxruntime raises its own exception types
            raise UserError(f"{source}: quantisation failed ({first_line(exc)})") from None
        finally:
            logging.disable(logging.NOTSET)
        atomic_write_bytes(target, out.read_bytes())


def export_int8(run_dir: str | Path, out_dir: str | Path, calibration: Iterable[str | Path],
                int8_stages: Sequence[str] = DEFAULT_INT8_STAGES, count: int = DEFAULT_CALIBRATION_COUNT,
                seed: int = 0, stages: tuple[str, ...] = STAGES, method: str | None = None,
                weight_bits: int = DEFAULT_WEIGHT_BITS) -> dict[str, Any]:
    """Export ``run_dir``'s nets to ONNX in ``out_dir`` and quantise ``int8_stages`` of them with
    crops from the ``calibration`` sample folders, each net with calibration ``method`` (None: its
    :data:`DEFAULT_METHODS` entry); returns the ``export.json`` record."""
    require_onnxruntime()
    if isinstance(int8_stages, str) and not int8_stages.strip(" ,"):
        raise UserError("--int8-nets names no net to quantise (give nets, or 'none' for an fp32 export in this layout)")
    int8_stages = parse_int8_stages(int8_stages)
    check_weight_bits(weight_bits)
    absent = [stage for stage in int8_stages if stage in stages and not stage_weights_path(run_dir, stage).is_file()]
    if absent:
        raise UserError(f"{run_dir}: no {absent[0]}.pt to quantise (--int8-nets asks for {', '.join(int8_stages)})")
    by_size = calibration_sets(calibration) if int8_stages else {}
    for stage in int8_stages:  # every check before anything is written
        if stage in stages and not by_size.get(INPUT_SIZE[stage]):
            sizes = ", ".join(f"{s}x{s}" for s in sorted(by_size)) or "none"
            raise UserError(f"no {INPUT_SIZE[stage]}x{INPUT_SIZE[stage]} crops to calibrate {stage} with in "
                            f"{', '.join(map(str, calibration))} (crop sizes found: {sizes}); give its "
                            f"gen-samples --stage {stage} folder, or leave it fp32 with --int8-nets")
    record = export_models(run_dir, "onnx", out_dir, stages=stages)
    out_dir = Path(out_dir)
    import onnxruntime

    calibrated: dict[str, Any] = {}
    for stage, model in record["models"].items():
        model["precision"] = "fp32"
        if stage not in int8_stages:
            continue
        sources = by_size[INPUT_SIZE[stage]]
        inputs = calibration_inputs(sources, count, seed)
        path = out_dir / exported_file(stage, "onnx")
        net_method = method or DEFAULT_METHODS[stage]
        quantize_onnx_net(path, path, inputs, net_method, weight_bits)
        model["precision"] = "int8"
        calibrated[stage] = {"sources": [str(s) for s in sources], "crops": int(len(inputs)),
                             "crop_size": INPUT_SIZE[stage], "seed": seed,
                             "method": f"percentile {PERCENTILE}" if net_method == "percentile" else net_method}
    record["int8"] = {"toolkit": f"onnxruntime {onnxruntime.__version__} quantize_static",
                      "format": "QOperator", "per_channel_weights": True,
                      "weights": f"int8, {weight_bits}-bit range",
                      "activations": "uint8, per tensor",
                      "int8_nets": [s for s in STAGES if s in calibrated],
                      "fp32_nets": [s for s in STAGES if s in record["models"] and s not in calibrated],
                      "calibration": calibrated}
    atomic_write_json(out_dir / "export.json", record)
    return record

