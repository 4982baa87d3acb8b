"""The worker pool of sample runs (:mod:`mtcnn_train.samples.pool`): every task runs once, in other
processes when asked; a worker's error reaches the caller and stops the others; a dead worker gives
the one-line WorkerDiedError; the worker count rule."""
import os
import signal
import time

import numpy as np
import pytest

from mtcnn_train.errors import UserError
from mtcnn_train.samples.pool import WorkerDiedError, run_tasks, worker_count
from mtcnn_train.samples.units import WorkUnit


def square_and_pid(n: int) -> tuple[int, int]:
    return n * n, os.getpid()


def fail_or_sleep(n: int) -> int:
    if n == 0:
        raise UserError("unit 0 is broken")
    time.sleep(60)
    return n


def die(n: int) -> int:
    os.kill(os.getpid(), signal.SIGKILL)
    return n


def test_every_task_runs_once_in_the_workers_when_this_process_does_not_work():
    results = list(run_tasks(square_and_pid, range(7), 2, this_process_works=False))
    assert sorted(value for value, _ in results) == [n * n for n in range(7)]
    pids = {pid for _, pid in results}
    assert os.getpid() not in pids and 1 <= len(pids) <= 2


def test_without_helpers_or_with_one_task_everything_runs_here():
    assert list(run_tasks(square_and_pid, range(3), 0)) == [(n * n, os.getpid()) for n in range(3)]
    assert list(run_tasks(square_and_pid, [4], 3, this_process_works=False)) == [(16, os.getpid())]


def test_a_workers_error_reaches_the_caller_and_stops_the_other_workers():
    start = time.perf_counter()
    with pytest.raises(UserError, match="unit 0 is broken"):
        list(run_tasks(fail_or_sleep, [0, 1, 2], 2, this_process_works=False))
    assert time.perf_counter() - start < 45  # the sleeping units were not waited for


def test_a_killed_worker_stops_the_run_with_a_one_line_error():
    with pytest.raises(WorkerDiedError) as info:
        list(run_tasks(die, [0, 1, 2], 2, this_process_works=False))
    assert "worker process died" in str(info.value) and "rerun" in str(info.value)
    assert len(str(info.value).splitlines()) == 1


def test_worker_count_follows_the_config_and_the_amount_of_work(monkeypatch):
    units = [WorkUnit(f"wider-{k:06d}", "wider", [(0, 0, None)] * 32) for k in range(20)]
    assert worker_count(3, units) == 3 and worker_count(8, units[:2]) == 2 and worker_count(1, []) == 1
    monkeypatch.setattr(os, "cpu_count", lambda: 4)
    assert worker_count(0, units[:5]) == 1  # 160 images: not worth a worker's start-up
    assert worker_count(0, units) == 3  # 640 images: one process per 250
    assert worker_count(0, units * 10) == 4  # never more than the cores
    landmarks = [WorkUnit("landmarks-000000", "landmarks", [(0, 0, None)] * 1024)]
    assert worker_count(0, landmarks) == 1  # landmark faces count a twentieth


def test_freed_heap_memory_goes_back_to_the_os():
    """Blocks freed below a live one stay resident until trimmed (glibc returns only the heap's
    top by itself); after return_freed_memory they are gone from the resident set."""
    from mtcnn_train.samples.heap import _malloc_trim, return_freed_memory

    if _malloc_trim() is None:
        pytest.skip("not glibc: nothing to give back")

    def resident_mib() -> float:
        with open("/proc/self/status") as status:
            return next(int(line.split()[1]) for line in status if line.startswith("VmRSS")) / 1024

    blocks = [np.ones(8192, np.float64) for _ in range(4000)]  # 64 KB each: heap, not mmap
    keep = blocks[-1]
    del blocks
    before = resident_mib()
    assert return_freed_memory() is True
    assert resident_mib() < before - 100, (before, resident_mib())
    assert keep.sum() == 8192


def onednn_cache_setting(_: int) -> str | None:
    return os.environ.get("ONEDNN_PRIMITIVE_CACHE_CAPACITY")


def test_onednn_cache_is_bounded_unless_the_user_chose_a_size(monkeypatch):
    from mtcnn_train.samples.heap import ONEDNN_CACHE_CAPACITY, bound_onednn_cache

    monkeypatch.delenv("ONEDNN_PRIMITIVE_CACHE_CAPACITY", raising=False)
    bound_onednn_cache()
    assert os.environ["ONEDNN_PRIMITIVE_CACHE_CAPACITY"] == str(ONEDNN_CACHE_CAPACITY)
    monkeypatch.setenv("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "300")
    bound_onednn_cache()
    assert os.environ["ONEDNN_PRIMITIVE_CACHE_CAPACITY"] == "300"


def test_sample_workers_bound_onednn_cache_before_their_first_convolution(monkeypatch):
    """A worker of any caller (pipeline, a notebook) gets the bound, though its parent did not set it."""
    from mtcnn_train.samples.heap import ONEDNN_CACHE_CAPACITY

    monkeypatch.delenv("ONEDNN_PRIMITIVE_CACHE_CAPACITY", raising=False)
    results = list(run_tasks(onednn_cache_setting, range(2), 1, this_process_works=False))
    assert results == [str(ONEDNN_CACHE_CAPACITY)] * 2


def test_gen_samples_command_bounds_onednn_cache_before_it_mines(monkeypatch, tmp_path):
    from click.testing import CliRunner

    from mtcnn_train.cli import cli
    from mtcnn_train.samples import generate
    from mtcnn_train.samples.heap import ONEDNN_CACHE_CAPACITY

    seen = []

    def fake_generate(*args, **kwargs):
        seen.append(os.environ.get("ONEDNN_PRIMITIVE_CACHE_CAPACITY"))
        raise UserError("stop here")

    monkeypatch.delenv("ONEDNN_PRIMITIVE_CACHE_CAPACITY", raising=False)
    monkeypatch.setattr(generate, "generate_samples", fake_generate)
    result = CliRunner().invoke(cli, ["gen-samples", "--stage", "pnet", "--out", str(tmp_path / "out")])
    assert seen == [str(ONEDNN_CACHE_CAPACITY)], result.output
    assert isinstance(result.exception, UserError) and "stop here" in str(result.exception)
