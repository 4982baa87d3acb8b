"""Pieces of a detection side by side on the CPU (detection.cpu_workers)."""
from __future__ import annotations

import dataclasses
import threading

import pytest
import torch

from mtcnn_train.config import load_config
from mtcnn_train.errors import ConfigError
from mtcnn_train.detection.cascade import Cascade
from mtcnn_train.detection.side_by_side import SideBySide

from .conftest import random_image
from .test_cascade import _same


@pytest.fixture
def two_torch_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def test_side_by_side_gives_the_one_at_a_time_result(random_nets, test_cfg, two_torch_threads):
    """Levels and crop blocks on two single-threaded workers: the same faces as one piece after the
    other, in the same order; torch's thread count is back to 2 afterwards."""
    cfg = dataclasses.replace(test_cfg, min_face_size=12)  # more pyramid levels and more crops
    one = Cascade(*random_nets, cfg=dataclasses.replace(cfg, cpu_workers=1))
    two = Cascade(*random_nets, cfg=dataclasses.replace(cfg, cpu_workers=0))
    images = [random_image(seed, 160, 200) for seed in range(3)]
    for image in images:
        a, b = one.detect(image), two.detect(image)
        assert len(a) > 0
        _same(a, b)
        for stage in ("pnet", "rnet"):
            _same(one.detect(image, stages=stage), two.detect(image, stages=stage))
    assert two.detect_stages(images[0])["onet"].boxes.tolist() == two.detect(images[0]).boxes.tolist()
    assert torch.get_num_threads() == 2


def test_map_runs_on_single_threaded_workers_in_order(two_torch_threads):
    pieces = SideBySide(0)
    seen = []

    def piece(item: int) -> int:
        seen.append((threading.current_thread().name, torch.get_num_threads(), torch.is_inference_mode_enabled()))
        return item * item

    assert pieces.map(piece, [1, 2, 3]) == [1, 4, 9]  # outside running(): the caller's thread
    assert {name for name, _, _ in seen} == {threading.current_thread().name}
    seen.clear()
    with pieces.running():
        assert torch.get_num_threads() == 1
        assert pieces.map(piece, list(range(40))) == [i * i for i in range(40)]
    assert torch.get_num_threads() == 2
    assert all(name.startswith("mtcnn-piece") and threads == 1 and inference for name, threads, inference in seen)
    pieces.close()


def test_one_worker_or_one_thread_runs_in_the_callers_thread():
    for pieces in (SideBySide(1), SideBySide(0)):
        before = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            with pieces.running():
                assert pieces.parallel() == 1
                assert pieces.map(lambda _: threading.current_thread().name, [0, 1]) == [threading.current_thread().name] * 2
        finally:
            torch.set_num_threads(before)


def test_negative_cpu_workers_is_refused(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("detection:\n  cpu_workers: -1\n")
    with pytest.raises(ConfigError, match="cpu_workers"):
        load_config(path)
