"""Independent pieces of one detection run side by side on the CPU, one thread each.

With ``T`` intra-op threads (``torch.get_num_threads()``) PyTorch splits every op T ways.  The
cascade's ops are small on the CPU (a row strip of a pyramid level, 32 crops), and most gain little
from a second thread: the P-Net levels of 16 WIDER images took 51 ms an image on one thread and
48 ms on two (2-core VM).  Its pieces are independent, though: the pyramid levels, the blocks of
R-Net and O-Net crops.  Run ``T`` at a time, each on one thread, they took 35 ms.

:class:`SideBySide` keeps a small pool of worker threads, each set to one intra-op thread when it
starts (OpenMP's thread count is per thread); the caller's count is put back when
:meth:`SideBySide.running` ends.  The results are the same as one piece after the other, in the same
order.
"""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Callable, Iterator, Sequence, TypeVar

import torch

Item = TypeVar("Item")
Result = TypeVar("Result")


def _one_thread() -> None:
    torch.set_num_threads(1)


class SideBySide:
    """Within :meth:`running`, ``map(fn, items)`` runs on a pool of single-threaded workers;
    outside it, or with one worker, in the caller's thread.

    ``workers``: 0 follows ``torch.get_num_threads()`` when :meth:`running` starts, 1 runs
    everything in the caller's thread (each op then uses torch's intra-op threads), N uses N.
    While :meth:`running`, the caller's thread itself runs on one intra-op thread: an OpenMP team
    left spinning by the caller's last op would take a core from the workers (measured: the whole
    cascade 89-99 ms an image with the caller on two threads, against 79-81 ms one piece at a time).
    """

    def __init__(self, workers: int = 0) -> None:
        self.workers = workers
        self._active = 0
        self._pool: ThreadPoolExecutor | None = None
        self._pool_size = 0
        self._lock = threading.Lock()

    def count(self) -> int:
        """How many pieces would run at once if :meth:`running` started now."""
        return self.workers if self.workers > 0 else max(1, torch.get_num_threads())

    @contextmanager
    def running(self) -> Iterator[None]:
        """Pieces mapped inside run side by side; torch's thread count is put back on leaving."""
        count = self.count()
        if count <= 1 or self._active:
            yield
            return
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        self._active = count
        try:
            yield
        finally:
            self._active = 0
            torch.set_num_threads(threads)

    def map(self, fn: Callable[[Item], Result], items: Sequence[Item]) -> list[Result]:
        """``[fn(item) for item in items]`` (under ``torch.inference_mode``), in order."""
        if self._active <= 1 or len(items) <= 1:
            with torch.inference_mode():
                return [fn(item) for item in items]
        return list(self._executor(self._active).map(lambda item: _in_inference_mode(fn, item), items))

    def parallel(self) -> int:
        """Pieces running at once now (1 outside :meth:`running`)."""
        return max(1, self._active)

    def _executor(self, count: int) -> ThreadPoolExecutor:
        with self._lock:
            if self._pool is None or self._pool_size != count:
                if self._pool is not None:
                    self._pool.shutdown(wait=True)
                self._pool = ThreadPoolExecutor(count, thread_name_prefix="mtcnn-piece", initializer=_one_thread)
                self._pool_size = count
            return self._pool

    def close(self) -> None:
        with self._lock:
            if self._pool is not None:
                self._pool.shutdown(wait=True)
                self._pool = None

    def __getstate__(self) -> dict:  # a cascade may be pickled (e.g. into worker processes): no threads
        return {"workers": self.workers}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["workers"])


def _in_inference_mode(fn: Callable[[Item], Result], item: Item) -> Result:
    with torch.inference_mode():  # thread-local: each worker enters it itself
        return fn(item)
