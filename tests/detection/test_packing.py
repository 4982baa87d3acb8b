"""The packed pyramid (detection/packing.py): layout rules, and the same P-Net outputs and
detections as one P-Net call per level."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from mtcnn_train.config import DetectionConfig
from mtcnn_train.detection import cascade as cascade_module
from mtcnn_train.detection.cascade import Cascade, _pnet_maps, pyramid_scales, scaled_size
from mtcnn_train.detection.packing import ceil_lines, lines_in_rows, pack_levels, pnet_output_side
from tests.random_nets import make_random_nets


def _levels(height: int, width: int, min_face: float = 20.0) -> list[tuple[int, int]]:
    return [scaled_size(height, width, s) for s in pyramid_scales(height, width, min_face, 0.709)]


@pytest.mark.parametrize("size", [(480, 640), (641, 479), (97, 1200), (25, 25), (1024, 768)])
def test_levels_lie_apart_at_even_offsets_inside_the_canvas(size):
    sizes = _levels(*size)
    packed = pack_levels(sizes)
    canvas_height, canvas_width = packed.canvas
    assert canvas_width == max(w for _, w in sizes)
    taken = np.zeros(packed.canvas, dtype=int)
    for (height, width), (top, left) in zip(sizes, packed.offsets):
        assert top % 2 == 0 and left % 2 == 0
        assert top + height <= canvas_height and left + width <= canvas_width
        taken[top:top + height, left:left + width] += 1
    assert taken.max() == 1  # no two levels share a pixel
    # The canvas wastes no more than half of its area (shelves of a 0.709 pyramid waste about a fifth).
    assert taken.sum() / taken.size > 0.5


def test_output_windows_are_each_levels_output_map():
    sizes = [(100, 80), (71, 57), (50, 41), (36, 29), (25, 21), (18, 15), (13, 12)]
    packed = pack_levels(sizes)
    for level, (height, width) in enumerate(sizes):
        rows, cols = packed.output_window(level)
        assert rows.stop - rows.start == pnet_output_side(height)
        assert cols.stop - cols.start == pnet_output_side(width)
        assert rows.start == packed.offsets[level][0] // 2 and cols.start == packed.offsets[level][1] // 2
    assert pnet_output_side(12) == 1 and pnet_output_side(13) == 2 and pnet_output_side(14) == 2


def test_ceil_lines_only_where_a_conv1_side_is_odd():
    # conv1 maps: 13 x 10 (odd rows) and 12 x 11 (odd columns), 12 x 12 (none).
    lines = ceil_lines([(15, 12), (14, 13), (14, 14)], [(0, 0), (20, 0), (40, 0)])
    assert lines == ((13, 14, 0, 10), (20, 32, 11, 12))
    # A strip whose conv1 rows are 10 .. 24 sees both, shifted; one of rows 0 .. 9 sees none.
    assert lines_in_rows(lines, 10, 25) == [(3, 4, 0, 10), (10, 15, 11, 12)]
    assert lines_in_rows(lines, 0, 10) == []


def test_pack_levels_rejects_nothing_to_pack_and_levels_below_the_window():
    with pytest.raises(ValueError, match="no pyramid levels"):
        pack_levels([])
    with pytest.raises(ValueError, match="12 px"):
        pack_levels([(40, 40), (11, 30)])


@pytest.mark.parametrize("strip_bytes", [2**22, 2**14])
@pytest.mark.parametrize("size", [(161, 203), (200, 150), (57, 83)])
def test_packed_canvas_gives_each_levels_p_net_maps(size, strip_bytes, monkeypatch):
    """Odd and even level sides, with and without row strips cutting through the ceil lines."""
    monkeypatch.setattr(cascade_module, "PNET_STRIP_BYTES", strip_bytes)
    pnet = make_random_nets(3)[0]
    sizes = _levels(*size, min_face=12.0)
    assert any((h - 2) % 2 for h, _ in sizes) and any((w - 2) % 2 for _, w in sizes)
    packed = pack_levels(sizes)
    generator = torch.Generator().manual_seed(1)
    levels = [torch.randint(0, 256, (1, h, w, 3), generator=generator).float().permute(0, 3, 1, 2) for h, w in sizes]
    # Garbage (bright pixels) between the levels: the packed outputs must not read it.
    canvas = torch.full((1, *packed.canvas, 3), 255.0).permute(0, 3, 1, 2)
    for level, (top, left) in zip(levels, packed.offsets):
        canvas[:, :, top:top + level.shape[2], left:left + level.shape[3]] = level
    with torch.inference_mode():
        logits, offsets = _pnet_maps(pnet, canvas, packed.lines)
        for index, level in enumerate(levels):
            alone_logits, alone_offsets = _pnet_maps(pnet, level)
            rows, cols = packed.output_window(index)
            torch.testing.assert_close(logits[:, :, rows, cols], alone_logits, atol=1e-4, rtol=1e-5)
            torch.testing.assert_close(offsets[:, :, rows, cols], alone_offsets, atol=1e-4, rtol=1e-5)
        # Without the ceil lines some level's edge cells read the garbage.
        unfilled = _pnet_maps(pnet, canvas)[0]
    differs = [not torch.allclose(unfilled[:, :, rows, cols], _pnet_maps(pnet, level)[0], atol=1e-4)
               for level, (rows, cols) in zip(levels, map(packed.output_window, range(len(levels))))]
    assert any(differs)


@pytest.mark.parametrize("batch", [1, 3])
def test_cascade_with_a_packed_pyramid_finds_the_same_faces(batch, tmp_path):
    pnet, rnet, onet = make_random_nets(0)
    rng = np.random.default_rng(4)
    images = [rng.integers(0, 256, (143, 181, 3), dtype=np.uint8) for _ in range(batch)]
    results = {}
    for packed in (False, True):
        cfg = DetectionConfig(thresholds=[0.5, 0.5, 0.5], min_face_size=15, packed_pyramid=packed, device="cpu")
        cascade = Cascade(pnet, rnet, onet, cfg, device="cpu", stack=batch > 1)
        results[packed] = {stage: cascade.detect_batch(images, stages=stage) for stage in ("pnet", "onet")}
    assert all(len(found) > 0 for found in results[False]["onet"])  # faces reach the last stage
    for stage in ("pnet", "onet"):
        for plain, packed in zip(results[False][stage], results[True][stage]):
            assert len(plain) == len(packed)
            np.testing.assert_allclose(packed.boxes, plain.boxes, atol=1e-3)
            np.testing.assert_allclose(packed.scores, plain.scores, atol=1e-5)


def test_nets_without_the_fused_path_keep_one_call_per_level():
    """A P-Net that is not our PNet (an ONNX net, a subclass) runs level by level even when packing is on."""
    from mtcnn_train.nets import PNet

    class OwnForward(PNet):
        calls = 0

        def forward(self, x):
            OwnForward.calls += 1
            return super().forward(x)

    pnet = OwnForward()
    pnet.load_state_dict(make_random_nets(0)[0].state_dict())
    image = np.random.default_rng(2).integers(0, 256, (90, 120, 3), dtype=np.uint8)
    cascade = Cascade(pnet, cfg=DetectionConfig(min_face_size=15, packed_pyramid=True, device="cpu"), device="cpu")
    cascade.detect(image, stages="pnet")
    assert OwnForward.calls == len(pyramid_scales(90, 120, 15, 0.709)) > 1
