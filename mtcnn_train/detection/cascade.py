"""The MTCNN cascade at inference: P-Net over an image pyramid, then R-Net, then O-Net.

One class, :class:`Cascade`, shared by the ``detect`` command, hard-example mining and evaluation::

    from mtcnn_train.detection.cascade import Cascade
    cascade = Cascade.from_run_dir("runs/demo", cfg.detection)
    dets = cascade.detect(image_rgb)               # boxes (N, 4), scores (N,), landmarks (N, 5, 2)
    proposals = cascade.detect_batch(images, stages="pnet")   # P-Net only, e.g. for mining

Output boxes are float ``x1, y1, x2, y2`` pixel edges (docs/CONVENTIONS.md).

The arithmetic reproduces the reference MTCNN (Zhang et al.'s code, as ported by facenet-pytorch,
whose published weights were tuned with it), so imported weights give the reference's boxes:

* pyramid: scales ``12 / min_face * factor^k`` while the shorter side stays >= 12 px, each level
  resized to ``int(side * scale + 1)`` with area averaging (a first scale above 1 when
  ``min_face < 12`` grows the image, as the reference's ``F.interpolate`` does); on the CPU P-Net
  runs over a large level in row strips (:func:`pnet_strips`), with the same output, and with
  ``detection.packed_pyramid`` once over all levels packed into one canvas (:mod:`packing`);
* P-Net cell ``(x, y)`` covers the 12x12 window at stride 2.  How that window maps back to the
  image is the P-Net's **window rule**, recorded in its checkpoint (:data:`WINDOW_RULES`):

  - ``reference`` (the published weights, which were trained with it): the reference's 1-based
    inclusive pixel indices ``floor((2x + 1) / s) .. floor((2x + 12) / s)``; P-Net's NMS (0.5
    within a scale, 0.7 across scales) and its box regression run on those inclusive
    coordinates, as in the reference (overlap and width without its ``+1``), then boxes become
    pixel edges;
  - ``exact`` (the nets this package trains): the pixel edges ``[2x / sx, (2x + 12) / sx)`` with
    the level's true scales ``sx = level_width / width`` (``int(width * s + 1) / width``, not
    ``s``) and likewise in y -- exactly the square a P-Net training crop is cut from
    (:mod:`mtcnn_train.samples.sampling`), so regression ``x1 + dx * w`` decodes the target
    ``(face - crop) / crop_side`` it was trained on;
* from R-Net on, everything is in pixel edges, where the reference's ``+1`` arithmetic is exact:
  squaring, regression ``x + dx * w``, landmarks ``x1 + px * w``, the final 'Min' NMS.  R-Net's NMS
  uses the reference's inclusive overlap (boxes one pixel narrower), via
  :func:`geometry.edges_to_inclusive`;
* crops for R-Net and O-Net use integer windows ``[trunc(x1 + 1) - 1, trunc(x2))`` (the
  reference's ``fix``), area-averaged to 24 or 48 px (:func:`imaging.crop_resize_area`, all boxes
  in a few tensor operations).  ``detection.crop_border`` picks what happens outside the image:
  ``zero`` (original MTCNN, and our training crops) or ``clip`` (facenet-pytorch);
* thresholds: P-Net keeps ``p >= t``, R-Net and O-Net keep ``p > t``, as the reference.

Everything per box is tensor code on the detector's device; Python loops run over pyramid scales,
image batches and chunks of boxes only.  Images of equal size go through the pyramid together.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mtcnn_train.checkpoint import checkpoint_window_rule, load_stage_net, stage_weights_path
from mtcnn_train.config import DetectionConfig
from mtcnn_train.stages import INPUT_SIZE, STAGES, check_stage
from mtcnn_train.devices import resolve_device
from mtcnn_train.errors import UserError
from mtcnn_train.geometry import (
    batched_nms, calibrate, edges_to_inclusive, inclusive_to_edges, landmarks_from_offsets, mirror_box_offsets,
    mirror_point_fractions, square)
from mtcnn_train.imaging import crop_resize_area, resize_area, summed_area_table
from mtcnn_train.detection import BACKENDS
from mtcnn_train.detection.packing import PNET_CELL, PNET_STRIDE, lines_in_rows, pack_levels, pnet_output_side
from mtcnn_train.detection.side_by_side import SideBySide
from mtcnn_train.detection.onnx_runtime import (exported_file, exported_window_rule, is_int8_export, load_onnx_nets,
                                                warn_if_int8_weights_overflow)
from mtcnn_train.nets import ONet, PNet, RNet, normalize

#: How a P-Net output cell maps back to image pixels (module docstring); checkpoints record theirs.
WINDOW_RULES = ("reference", "exact")
#: Bytes of P-Net's first activation per row strip of a pyramid level on the CPU (:func:`pnet_strips`).
PNET_STRIP_BYTES = 2**22
#: Boxes per R-Net / O-Net forward call.  On the CPU small chunks keep the activations in the
#: caches (measured on one core: R-Net 38 us a crop in chunks of 32, 100 us in chunks of 256;
#: O-Net 242 and 460 us in chunks of 16 and 64); on a GPU, large chunks fill it.
#: onnxruntime pays a fixed cost per call: its nets get the larger chunks measured before these.
NET_CHUNK = {"cpu": {"rnet": 32, "onet": 16}, "onnx": {"rnet": 256, "onet": 64}, "cuda": {"rnet": 4096, "onet": 1024}}
#: On the CPU the R-Net / O-Net crops are cut in blocks of about this many bytes, each block then
#: fed to the net chunk by chunk: one crop call serves many small chunks.
CROP_BLOCK_BYTES = 2**22


@dataclass
class Detections:
    """Faces found in one image: pixel-edge boxes, scores and (after O-Net) landmarks."""

    boxes: np.ndarray  # (N, 4) float32 x1, y1, x2, y2
    scores: np.ndarray  # (N,) float32, the last stage's face probability
    landmarks: np.ndarray | None = None  # (N, 5, 2) float32 (x, y); None unless O-Net ran

    def __len__(self) -> int:
        return len(self.boxes)

    @classmethod
    def empty(cls, with_landmarks: bool) -> "Detections":
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32),
                   np.zeros((0, 5, 2), np.float32) if with_landmarks else None)


# --------------------------------------------------------------------------------------------
# The pieces, as small pure functions (tested one by one in tests/detection/).


def pyramid_scales(height: int, width: int, min_face_size: float, factor: float) -> list[float]:
    """Scales at which P-Net's 12 px window sees faces from ``min_face_size`` up (reference rule)."""
    scale = 12.0 / min_face_size
    shorter = min(height, width) * scale
    scales = []
    while shorter >= 12:
        scales.append(scale)
        scale *= factor
        shorter *= factor
    return scales


def scaled_size(height: int, width: int, scale: float) -> tuple[int, int]:
    """Size of one pyramid level: ``int(side * scale + 1)``, as the reference."""
    return int(height * scale + 1), int(width * scale + 1)


def pnet_candidates(probs: torch.Tensor, offsets: torch.Tensor, scale: float, threshold: float,
                    window_rule: str = "reference", image_size: tuple[int, int] | None = None):
    """Cells of a P-Net output map that pass ``threshold``: their windows, scores and offsets.

    ``probs`` (B, H', W') face probabilities, ``offsets`` (B, 4, H', W').  Returns image indices
    (n,), windows (n, 4), scores (n,) and offsets (n, 4); cells in row-major order per image.
    Windows follow ``window_rule`` (module docstring): ``reference`` gives the reference's
    **inclusive 1-based** pixel indices at nominal ``scale``; ``exact`` gives pixel edges at the
    level's true scales, which needs ``image_size`` ``(height, width)`` of the full image.
    """
    mask = probs >= threshold
    cells = mask.nonzero()
    image_index = cells[:, 0]
    xy = cells[:, 1:].to(probs.dtype).flip(1)  # (row, col) -> (x, y)
    if window_rule == "reference":
        top_left = ((PNET_STRIDE * xy + 1) / scale).floor()
        bottom_right = ((PNET_STRIDE * xy + PNET_CELL) / scale).floor()
    elif window_rule == "exact":
        if image_size is None:
            raise ValueError("the exact window rule needs the image size")
        height, width = image_size
        level_height, level_width = scaled_size(height, width, scale)
        true_scale = torch.tensor([level_width / width, level_height / height], dtype=probs.dtype, device=probs.device)
        top_left = PNET_STRIDE * xy / true_scale
        bottom_right = (PNET_STRIDE * xy + PNET_CELL) / true_scale
    else:
        raise ValueError(f"unknown window rule {window_rule!r}; expected one of {', '.join(WINDOW_RULES)}")
    windows = torch.cat([top_left, bottom_right], 1)
    return image_index, windows, probs[mask], offsets.permute(0, 2, 3, 1)[mask]


def decode_pnet_windows(windows: torch.Tensor, offsets: torch.Tensor, window_rule: str) -> torch.Tensor:
    """P-Net's box regression applied to its windows, in pixel edges (not yet squared).

    The reference regresses its inclusive windows with the width ``x2 - x1`` (no ``+1``) and the
    result is then read as inclusive; exact windows are already pixel edges.
    """
    boxes = calibrate(windows, offsets)
    return inclusive_to_edges(boxes) if window_rule == "reference" else boxes


def crop_windows(boxes: torch.Tensor, width: int, height: int, clip: bool) -> torch.Tensor:
    """Integer pixel windows ``x0, y0, x1, y1`` (half-open) that the reference crops for ``boxes``.

    The reference truncates its inclusive 1-based corners (``fix``): in pixel edges that is
    ``[trunc(x1 + 1) - 1, trunc(x2))``.  With ``clip`` the window is cut to the image.
    """
    inclusive = edges_to_inclusive(boxes)
    windows = inclusive.trunc().long() - torch.tensor([1, 1, 0, 0], device=boxes.device)
    if clip:
        windows[:, 0::2] = windows[:, 0::2].clamp(0, width)
        windows[:, 1::2] = windows[:, 1::2].clamp(0, height)
    return windows


def _pnet_maps(net: nn.Module, level: torch.Tensor, fill_lines=(), map_strips=None) -> tuple[torch.Tensor, torch.Tensor]:
    """P-Net's face logits and box offsets on a pyramid level of raw 0..255 pixels: our
    :class:`PNet`'s fused path, on the CPU in row strips (:func:`pnet_strips`, run by
    ``map_strips`` when given, e.g. side by side); any other module (an ONNX net, a subclass with
    its own forward) runs its forward on normalised pixels.  ``fill_lines``: a packed pyramid's
    ``conv1`` lines (:func:`packing.ceil_lines`), our :class:`PNet` only."""
    if type(net) is not PNet:
        return net(normalize(level))[:2]
    if level.device.type != "cpu":
        return net.face_and_box_from_pixels(level, fill_lines=fill_lines)
    weights = net.pixel_weights(lanes=net.lanes_pay(level))

    def strip_maps(rows: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        top, bottom = rows  # the strip's conv1 map holds the level's conv1 rows top .. bottom - 3
        return net.face_and_box_from_pixels(level[:, :, top:bottom], weights, lines_in_rows(fill_lines, top, bottom - 2))

    strips = pnet_strips(level.shape[2], level.shape[3])
    parts = map_strips(strip_maps, strips) if map_strips is not None else [strip_maps(rows) for rows in strips]
    if len(parts) == 1:
        return parts[0]
    return torch.cat([p[0] for p in parts], 2), torch.cat([p[1] for p in parts], 2)


def pnet_strips(height: int, width: int, budget: int = PNET_STRIP_BYTES) -> list[tuple[int, int]]:
    """Input row ranges ``[top, bottom)`` of a ``height x width`` level whose P-Net maps, stacked,
    are the level's maps exactly.

    Output row ``j`` reads input rows ``2j .. 2j + 11``; a strip starting at an even row ``2j0``
    and ending at ``2j1 + 12`` gives output rows ``j0 .. j1`` (its max pooling has no partial window
    there), and the last strip runs to the level's bottom edge, as the whole level does.  Strips
    hold about ``budget`` bytes of the first (largest) activation: on the CPU a whole large level's
    maps (37 MB for a 950 x 615 level) are fresh memory the kernel has to map and zero on every
    call, which cost more than the arithmetic; a strip stays in the caches.
    """
    out_rows = pnet_output_side(height)
    per_strip = max(8, budget // (PNET_STRIDE * width * 16 * 4))  # 16 float channels per pixel
    if out_rows <= per_strip:
        return [(0, height)]
    count = -(-out_rows // per_strip)
    per_strip = -(-out_rows // count)  # balanced: no small last strip (it would leave oneDNN)
    strips = []
    for first in range(0, out_rows, per_strip):
        last = first + per_strip - 1
        bottom = height if last >= out_rows - 1 else PNET_STRIDE * last + PNET_CELL
        strips.append((PNET_STRIDE * first, bottom))
    return strips


def final_scores(onet_probs: torch.Tensor, rnet_probs: torch.Tensor, rnet_weight: float) -> torch.Tensor:
    """A face's final score: ``p_O ** (1 - w) * p_R ** w`` (``detection.rnet_score_weight``).

    With ``w = 0`` it is O-Net's probability unchanged (the reference); boxes O-Net could not read
    (probability -1) keep -1, so they are never kept.  R-Net's score carries evidence of its own
    (another crop size, another net), which a weaker O-Net's ranking can gain from.
    """
    if rnet_weight == 0:
        return onet_probs
    fused = onet_probs.clamp(min=0) ** (1.0 - rnet_weight) * rnet_probs.clamp(min=0) ** rnet_weight
    return torch.where(onet_probs < 0, onet_probs, fused)


def _face_and_box(net: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """R-Net's face logits and box offsets (our :class:`RNet` skips its landmark head); any other
    module runs its own forward."""
    if type(net) is RNet:
        return net.face_and_box(x)
    return net(x)[:2]


def _last_stage(stages: str | Sequence[str] | None, available: tuple[str, ...]) -> str:
    """Normalise a ``stages`` argument (a stage name or a prefix of P, R, O) to the stage to stop at."""
    if stages is None:
        return available[-1]
    if isinstance(stages, str):
        last = stages
    else:
        stages = tuple(stages)
        if not stages or stages != STAGES[:len(stages)]:
            raise UserError(f"stages must be pnet, pnet+rnet or pnet+rnet+onet in order, got {'+'.join(stages) or 'none'}")
        last = stages[-1]
    check_stage(last)
    if last not in available:
        raise UserError(f"cannot run up to {last}: the cascade has only {', '.join(available)}")
    return last


def _check_image(image: np.ndarray, position: int) -> None:
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        shape = getattr(image, "shape", None)
        dtype = getattr(image, "dtype", type(image).__name__)
        raise UserError(f"image {position}: expected an H x W x 3 uint8 RGB array, got shape {shape} dtype {dtype}")


# --------------------------------------------------------------------------------------------
# The cascade


class Cascade:
    """P-Net, optionally R-Net and O-Net, run as the MTCNN cascade with ``cfg``'s thresholds.

    The nets are moved to ``device``; they are only read (no BatchNorm or dropout in MTCNN, so
    their train/eval mode does not matter).  ``device='auto'`` uses ``cfg.device`` (and CUDA when
    that says auto and a GPU is present).  ``stack`` sends equal-size images of a batch through the
    pyramid together (default: on CUDA only; on the CPU one by one is faster, see
    :meth:`detect_batch`); the results are the same either way.  ``pnet_window`` is the P-Net's
    window rule (:data:`WINDOW_RULES`): ``reference`` for the published weights, ``exact`` for
    the nets this package trains; :meth:`from_run_dir` reads it from the checkpoint.
    """

    def __init__(self, pnet: nn.Module, rnet: nn.Module | None = None, onet: nn.Module | None = None,
                 cfg: DetectionConfig | None = None, device: str | torch.device = "auto",
                 stack: bool | None = None, pnet_window: str = "reference") -> None:
        if onet is not None and rnet is None:
            raise UserError("an O-Net needs an R-Net before it in the cascade")
        if pnet_window not in WINDOW_RULES:
            raise UserError(f"unknown P-Net window rule {pnet_window!r}; expected one of {', '.join(WINDOW_RULES)}")
        self.pnet_window = pnet_window
        self.cfg = cfg if cfg is not None else DetectionConfig()
        self.device = resolve_device(self.cfg.device if str(device) == "auto" else device)
        self.stack = self.device.type == "cuda" if stack is None else stack
        self.nets = {name: net.to(self.device) for name, net in (("pnet", pnet), ("rnet", rnet), ("onet", onet))
                     if net is not None}
        # onnxruntime nets (not torch modules) run on their own threads, and pay a fixed cost per call.
        self.torch_nets = all(isinstance(net, nn.Module) for net in self.nets.values())
        # On the CPU the pyramid levels and the blocks of crops of torch nets run side by side, one
        # thread each.
        self.pieces = SideBySide(self.cfg.cpu_workers if self.device.type == "cpu" and self.torch_nets else 1)

    @property
    def stages(self) -> tuple[str, ...]:
        return tuple(s for s in STAGES if s in self.nets)

    @classmethod
    def from_run_dir(cls, run_dir: str | Path, cfg: DetectionConfig | None = None,
                     stages: str | Sequence[str] = STAGES, device: str | torch.device = "auto",
                     stack: bool | None = None) -> "Cascade":
        """Load ``RUN_DIR/pnet.pt`` (and ``rnet.pt``, ``onet.pt`` as ``stages`` asks)."""
        run_dir = Path(run_dir)
        if not run_dir.is_dir():
            raise UserError(f"{run_dir}: weights folder not found")
        last = _last_stage(stages, STAGES)
        wanted = STAGES[:STAGES.index(last) + 1]
        nets = {stage: load_stage_net(run_dir, stage) for stage in wanted}
        return cls(nets["pnet"], nets.get("rnet"), nets.get("onet"), cfg=cfg, device=device, stack=stack,
                   pnet_window=checkpoint_window_rule(stage_weights_path(run_dir, "pnet")))

    @classmethod
    def from_onnx_dir(cls, export_dir: str | Path, cfg: DetectionConfig | None = None,
                      stages: str | Sequence[str] = STAGES, threads: int = 0) -> "Cascade":
        """The cascade over ``EXPORT_DIR/pnet.onnx`` (and ``rnet.onnx``, ``onet.onnx`` as ``stages``
        asks), as written by ``mtcnn-train export --format onnx``, run with onnxruntime on the CPU.

        The nets run in onnxruntime (``threads`` intra-op threads; 0: its default); the pyramid,
        crops and NMS stay torch code on the CPU, whatever ``cfg.device`` says.  Needs the ``onnx``
        extra (onnxruntime).
        """
        export_dir = Path(export_dir)
        if not export_dir.is_dir():
            raise UserError(f"{export_dir}: ONNX export folder not found")
        last = _last_stage(stages, STAGES)
        wanted = STAGES[:STAGES.index(last) + 1]
        missing = [s for s in wanted if not (export_dir / exported_file(s, "onnx")).is_file()]
        if missing:
            raise UserError(f"{export_dir}: no {exported_file(missing[0], 'onnx')} "
                            "(run mtcnn-train export --format onnx first)")
        nets = load_onnx_nets(export_dir, stages=wanted, threads=threads)
        return cls(nets["pnet"], nets.get("rnet"), nets.get("onet"), cfg=cfg, device="cpu", stack=False,
                   pnet_window=exported_window_rule(export_dir))

    @classmethod
    def load(cls, weights: str | Path, cfg: DetectionConfig | None = None, backend: str = "torch",
             stages: str | Sequence[str] = STAGES, device: str | torch.device = "auto",
             stack: bool | None = None) -> "Cascade":
        """The cascade of ``backend`` (:data:`BACKENDS`): ``torch`` from a run folder
        (:meth:`from_run_dir`), ``onnx`` from an export folder (:meth:`from_onnx_dir`), ``onnx-int8``
        from an export folder written by ``export --format onnx --int8``."""
        if backend == "torch":
            return cls.from_run_dir(weights, cfg, stages=stages, device=device, stack=stack)
        if backend not in BACKENDS:
            raise UserError(f"unknown backend {backend!r}; expected one of {', '.join(BACKENDS)}")
        if str(device).startswith("cuda"):
            raise UserError(f"the {backend} backend runs on the CPU only (device {device} asked for)")
        if backend == "onnx-int8":
            if Path(weights).is_dir() and not is_int8_export(weights):
                raise UserError(f"{weights}: not an int8 export (run mtcnn-train export --format onnx --int8 "
                                "--calibration SAMPLES first)")
            warn_if_int8_weights_overflow(weights)
        return cls.from_onnx_dir(weights, cfg, stages=stages, threads=torch.get_num_threads())

    # ---- public entry points ----------------------------------------------------------------

    def detect(self, image_rgb: np.ndarray, stages: str | Sequence[str] | None = None) -> Detections:
        """Faces in one ``H x W x 3`` uint8 RGB image.  ``stages='pnet'`` or ``'rnet'`` stops early."""
        return self.detect_batch([image_rgb], stages)[0]

    def detect_batch(self, images: Sequence[np.ndarray], stages: str | Sequence[str] | None = None) -> list[Detections]:
        """Faces in each image.  With ``stack`` (CUDA), images of equal size run through the
        pyramid together, in batches of ``cfg.batch_size``; the result for an image does not
        depend on its batch.

        Stopping after P-Net returns its calibrated, squared candidates (what R-Net would see),
        after R-Net the same for O-Net; landmarks are given only when O-Net ran.
        """
        last = _last_stage(stages, self.stages)
        by_size: dict[tuple[int, ...], list[int]] = defaultdict(list)
        for i, image in enumerate(images):
            _check_image(image, i)
            by_size[image.shape].append(i)
        results: list[Detections | None] = [None] * len(images)
        # On a GPU, equal-size images are stacked through the pyramid.  On the CPU they go one by
        # one: stacking 16 images of 1024x768 measured 1.9x slower (the activations of a whole
        # batch spill out of the caches), and nothing else in the cascade gains from it there.
        step = self.cfg.batch_size if self.stack else 1
        with self.pieces.running():
            for indices in by_size.values():
                for lo in range(0, len(indices), step):
                    chunk = indices[lo:lo + step]
                    for i, dets in zip(chunk, self._detect_same_size([images[i] for i in chunk], last)):
                        results[i] = dets
        return results  # type: ignore[return-value]

    def detect_stages(self, image_rgb: np.ndarray) -> dict[str, Detections]:
        """What each stage of the cascade hands on, from one pass over the image: ``{"pnet": ...,
        "rnet": ..., "onet": ...}`` (the stages this cascade has), each as :meth:`detect` with
        ``stages`` set to that stage would return it.  For stage diagnostics."""
        _check_image(image_rgb, 0)
        collected: dict[str, list[Detections]] = {}
        with self.pieces.running():
            self._detect_same_size([image_rgb], self.stages[-1], collected)
        return {stage: collected[stage][0] if stage in collected else Detections.empty(stage == "onet")
                for stage in self.stages}

    def crops(self, image_rgb: np.ndarray, boxes: np.ndarray, size: int) -> np.ndarray:
        """Cut ``boxes`` (pixel edges) out of an image exactly as the cascade cuts its R/O-Net inputs.

        Returns ``N x size x size x 3`` uint8 RGB: for hard-example mining, so training crops
        match what the nets see at detection time.
        """
        _check_image(image_rgb, 0)
        if len(boxes) == 0:
            return np.zeros((0, size, size, 3), np.uint8)
        with torch.inference_mode():
            images = torch.from_numpy(np.ascontiguousarray(image_rgb)).to(self.device)[None].permute(0, 3, 1, 2)
            table = summed_area_table(images)
            boxes_t = torch.as_tensor(np.asarray(boxes, np.float32).reshape(-1, 4), device=self.device)
            height, width = image_rgb.shape[:2]
            windows = crop_windows(boxes_t, width, height, clip=self.cfg.crop_border == "clip")
            index = torch.zeros(len(windows), dtype=torch.long, device=self.device)
            out = crop_resize_area(table, index, windows, size)
            return out.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()

    def run_onet(self, crops: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """O-Net on ``N x 3 x 48 x 48`` crops (0..255): face logits, box offsets and landmark
        fractions ``(N, 10)``, averaged with the mirror image's reading when
        ``landmarks_mirror_average`` (landmarks) or ``faces_mirror_average`` (logits, box offsets)
        is set."""
        net = self.nets["onet"]
        forward = net.infer if type(net) is ONet else net
        pixels = normalize(crops)
        logits, box, points = forward(pixels)
        if self.cfg.landmarks_mirror_average or self.cfg.faces_mirror_average:
            mirrored_logits, mirrored_box, mirrored_points = forward(pixels.flip(-1))
            if self.cfg.landmarks_mirror_average:
                points = 0.5 * (points + mirror_point_fractions(mirrored_points))
            if self.cfg.faces_mirror_average:
                logits = 0.5 * (logits + mirrored_logits)
                box = 0.5 * (box + mirror_box_offsets(mirrored_box))
        return logits, box, points

    # ---- the stages ------------------------------------------------------------------------

    @torch.inference_mode()
    def _detect_same_size(self, arrays: list[np.ndarray], last: str,
                          collect: dict[str, list[Detections]] | None = None) -> list[Detections]:
        """The cascade up to ``last`` on images of one size; ``collect`` (optional) receives each
        finished stage's per-image results under the stage's name."""
        cfg = self.cfg
        batch = len(arrays)
        height, width = arrays[0].shape[:2]
        stacked = np.ascontiguousarray(arrays[0])[None] if batch == 1 else np.stack(arrays)
        pixels = torch.from_numpy(stacked).to(self.device).permute(0, 3, 1, 2)  # B x 3 x H x W uint8

        def finish(stage: str, image_index, boxes, scores, landmarks=None) -> list[Detections]:
            result = self._split(batch, image_index, boxes, scores, landmarks,
                                 with_landmarks=last == "onet" or landmarks is not None)
            if collect is not None:
                collect[stage] = result
            return result

        # The integral image serves the R/O-Net crops, and on the CPU the pyramid too.
        table = summed_area_table(pixels) if (last != "pnet" or self.device.type == "cpu") else None
        image_index, boxes, scores = self._run_pnet(pixels, table if self.device.type == "cpu" else None)
        result = finish("pnet", image_index, boxes, scores)
        if last == "pnet" or len(boxes) == 0:
            return result

        clip = cfg.crop_border == "clip"
        probs, offsets, _ = self._classify("rnet", table, image_index, boxes, width, height, clip)
        passed = probs > cfg.thresholds[1]
        image_index, boxes, scores, offsets = image_index[passed], boxes[passed], probs[passed], offsets[passed]
        # The reference's NMS runs on the boxes R-Net read (P-Net's), before their regression.
        if cfg.rnet_nms_after_regression:
            boxes = square(calibrate(boxes, offsets))
        keep = batched_nms(edges_to_inclusive(boxes), scores, image_index, cfg.nms_rnet)
        image_index, scores, boxes = image_index[keep], scores[keep], boxes[keep]
        if not cfg.rnet_nms_after_regression:
            boxes = square(calibrate(boxes, offsets[keep]))
        result = finish("rnet", image_index, boxes, scores)
        if last == "rnet" or len(boxes) == 0:
            return result

        probs, offsets, points = self._classify("onet", table, image_index, boxes, width, height, clip)
        probs = final_scores(probs, scores, cfg.rnet_score_weight)
        passed = probs > cfg.thresholds[2]
        image_index, boxes, scores = image_index[passed], boxes[passed], probs[passed]
        landmarks = landmarks_from_offsets(boxes, points[passed])
        boxes = calibrate(boxes, offsets[passed])
        keep = batched_nms(boxes, scores, image_index, cfg.nms_onet, mode="min")
        return finish("onet", image_index[keep], boxes[keep], scores[keep], landmarks[keep])

    def _resize(self, pixels: torch.Tensor, table: torch.Tensor | None, size: tuple[int, int]) -> torch.Tensor:
        """One pyramid level, as ``F.interpolate(mode='area')``.  On the CPU the integral image
        gives the same averages faster (four look-ups per output pixel, exact integer sums)."""
        if table is not None:
            return resize_area(table, *size)
        return F.interpolate(pixels.float(), size=size, mode="area")

    def _packed_canvas(self, pixels: torch.Tensor, table: torch.Tensor | None, packed) -> torch.Tensor:
        """The pyramid's levels placed in one canvas as ``packed`` (:func:`packing.pack_levels`)
        lays them out; the rest is zeros (its P-Net outputs are not read)."""
        batch = pixels.shape[0]
        canvas = torch.zeros((batch, *packed.canvas, 3), device=self.device).permute(0, 3, 1, 2)  # channels-last
        for (level_height, level_width), (top, left) in zip(packed.sizes, packed.offsets):
            canvas[:, :, top:top + level_height, left:left + level_width] = self._resize(
                pixels, table, (level_height, level_width))
        return canvas

    def _run_pnet(self, pixels: torch.Tensor, table: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """P-Net over the pyramid: per-scale NMS, cross-scale NMS, regression, squaring."""
        cfg = self.cfg
        pnet = self.nets["pnet"]
        batch, _, height, width = pixels.shape

        def candidates(level_index: int, scale: float, logits: torch.Tensor, offsets: torch.Tensor):
            probs = torch.softmax(logits, dim=1)[:, 1]
            image_index, windows, scores, cell_offsets = pnet_candidates(
                probs, offsets, scale, cfg.thresholds[0], self.pnet_window, (height, width))
            return image_index, windows, scores, cell_offsets, torch.full_like(image_index, level_index)

        def level_candidates(level_index: int, scale: float) -> tuple[torch.Tensor, ...]:
            level = self._resize(pixels, table, scaled_size(height, width, scale))
            return candidates(level_index, scale, *_pnet_maps(pnet, level))

        scales = pyramid_scales(height, width, cfg.min_face_size, cfg.scale_factor)
        if cfg.packed_pyramid and type(pnet) is PNet and scales:  # one P-Net call for all levels
            packed = pack_levels([scaled_size(height, width, scale) for scale in scales])
            logits, offsets = _pnet_maps(pnet, self._packed_canvas(pixels, table, packed), packed.lines, self.pieces.map)
            found = []
            for level_index, scale in enumerate(scales):
                rows, cols = packed.output_window(level_index)
                found.append(candidates(level_index, scale, logits[:, :, rows, cols], offsets[:, :, rows, cols]))
        else:  # largest level first: side by side, the first takes about as long as all the others
            found = self.pieces.map(lambda level: level_candidates(*level), list(enumerate(scales)))
        if not found or sum(len(f[0]) for f in found) == 0:
            empty = torch.zeros((0, 4), device=self.device)
            return torch.zeros(0, dtype=torch.long, device=self.device), empty, torch.zeros(0, device=self.device)
        image_index, windows, scores, offsets, level = (torch.cat(parts) for parts in zip(*found))
        # One NMS call for every (scale, image) group at once.  Kept indices come back sorted by
        # score, ties in candidate order (scale by scale), the order the reference's per-scale
        # picks have once concatenated and stably sorted for the cross-scale NMS.
        keep = batched_nms(windows, scores, level * batch + image_index, cfg.nms_pnet_scale)
        image_index, windows, scores, offsets = image_index[keep], windows[keep], scores[keep], offsets[keep]
        keep = batched_nms(windows, scores, image_index, cfg.nms_pnet_all)
        # The reference regresses P-Net windows with their inclusive width x2 - x1 (no +1).
        boxes = decode_pnet_windows(windows[keep], offsets[keep], self.pnet_window)
        return image_index[keep], square(boxes), scores[keep]

    def _classify(self, stage: str, table: torch.Tensor, image_index: torch.Tensor, boxes: torch.Tensor,
                  width: int, height: int, clip: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Crop ``boxes``, run R-Net or O-Net: face probabilities, box offsets, landmark offsets.

        Boxes whose window is empty (entirely outside the image) get probability -1: never kept.
        """
        net = self.nets[stage]
        size = INPUT_SIZE[stage]
        windows = crop_windows(boxes, width, height, clip)
        valid = (windows[:, 2] > windows[:, 0]) & (windows[:, 3] > windows[:, 1])
        n = len(boxes)
        probs = torch.full((n,), -1.0, device=self.device)
        offsets = torch.zeros((n, 4), device=self.device)
        points = torch.zeros((n, 10), device=self.device)
        rows = valid.nonzero().squeeze(1)
        if len(rows) == 0:
            return probs, offsets, points
        chunk = NET_CHUNK["cuda" if self.device.type == "cuda" else "cpu" if self.torch_nets else "onnx"][stage]
        # Crops are cut a block at a time (one call for many small net chunks) within a memory
        # bound, and with side-by-side pieces in at least as many blocks as run at once.
        block = chunk
        if self.device.type == "cpu":
            block = min(CROP_BLOCK_BYTES // (3 * size * size * 4), -(-len(rows) // self.pieces.parallel()))
            block = max(chunk, -(-block // chunk) * chunk)

        def scores(block_rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
            block_crops = crop_resize_area(table, image_index[block_rows], windows[block_rows], size)
            found = []
            for lo in range(0, len(block_rows), chunk):
                crops = block_crops[lo:lo + chunk]
                found.append(self.run_onet(crops) if stage == "onet" else (*_face_and_box(net, normalize(crops)), None))
            logits, box, marks = zip(*found)
            return torch.cat(logits), torch.cat(box), torch.cat(marks) if stage == "onet" else None

        blocks = list(rows.split(block))
        for block_rows, (logits, box, marks) in zip(blocks, self.pieces.map(scores, blocks)):
            probs[block_rows] = torch.softmax(logits, dim=1)[:, 1]
            offsets[block_rows] = box
            if marks is not None:
                points[block_rows] = marks
        return probs, offsets, points

    @staticmethod
    def _split(batch: int, image_index: torch.Tensor, boxes: torch.Tensor, scores: torch.Tensor,
               landmarks: torch.Tensor | None, with_landmarks: bool) -> list[Detections]:
        """Per-image results, each in the order the last NMS kept them (highest score first)."""
        index = image_index.cpu().numpy()
        boxes_np = boxes.float().cpu().numpy().reshape(-1, 4)
        scores_np = scores.float().cpu().numpy().reshape(-1)
        marks_np = landmarks.float().cpu().numpy().reshape(-1, 5, 2) if landmarks is not None else None
        out = []
        for b in range(batch):
            rows = np.flatnonzero(index == b)
            if marks_np is not None:
                marks = marks_np[rows]
            else:
                marks = np.zeros((0, 5, 2), np.float32) if with_landmarks and len(rows) == 0 else None
            out.append(Detections(boxes_np[rows], scores_np[rows], marks))
        return out
