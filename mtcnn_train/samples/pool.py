"""The worker processes of a sample run: a thin layer over :class:`~concurrent.futures.ProcessPoolExecutor`.

The executor schedules the tasks and reports a dead worker (``BrokenProcessPool``); this layer adds
only what sample runs need on top of it:

* **This process works too**, from the start: it has numpy, OpenCV and torch imported already,
  while a spawned worker needs about 2 CPU seconds to start, so a small run is done here before
  the workers are up.
* **No unit waits on a worker still starting.**  A worker reports when it has started
  (:func:`_init_worker`); only then do units go to the executor, at most :data:`UNITS_PER_WORKER`
  per started worker (the one it cuts and the next, so it never idles while this process is busy
  cutting a unit of its own).  Everything else stays here, where this process takes it.
* **A dead worker stops the run** with a one-line :class:`WorkerDiedError` saying how to resume
  (the finished units are on disk), instead of ``BrokenProcessPool``'s traceback; an error or
  Ctrl-C stops the workers at once (as ``multiprocessing.Pool.terminate`` did).

Units finish in any order; each writes its own folder, so the output does not depend on it.
"""
from __future__ import annotations

import collections
import multiprocessing
import os
import signal
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Callable, Iterator, Sequence

from mtcnn_train.errors import UserError
from mtcnn_train.samples.heap import bound_onednn_cache
from mtcnn_train.samples.units import WorkUnit

#: With ``sampling.workers: 0`` one process per this many pending detection images (landmark faces
#: count a twentieth), up to one per core: starting a worker costs about 2 CPU seconds (it imports
#: numpy, OpenCV and torch), which only pays on larger runs.
IMAGES_PER_AUTO_WORKER = 250
#: Units handed to the executor per started worker: the one it cuts and the next.
UNITS_PER_WORKER = 2


class WorkerDiedError(UserError):
    """A worker process of the pool vanished mid-unit (SIGKILL, out-of-memory killer)."""


def worker_count(workers: int, pending: Sequence[WorkUnit]) -> int:
    """Processes to use: ``workers`` as configured (never more than there are units), or for 0 one
    per :data:`IMAGES_PER_AUTO_WORKER` pending images, at most one per CPU core."""
    if workers <= 0:
        load = sum(len(u.items) / (20 if u.kind == "landmarks" else 1) for u in pending)
        workers = min(os.cpu_count() or 1, 1 + int(load // IMAGES_PER_AUTO_WORKER))
    return max(1, min(workers, len(pending)))


def run_tasks(function: Callable[[Any], Any], tasks: Sequence[Any], helpers: int, *,
              this_process_works: bool = True) -> Iterator[Any]:
    """``function(task)`` for every task, here and in ``helpers`` spawned worker processes; yields
    each result in this process as it comes (in any order).

    ``function`` must be a module-level function (it is pickled to the workers).
    ``this_process_works=False`` leaves every task to the workers (tests use it to make sure that
    tasks really run in other processes).
    """
    tasks = list(tasks)
    if helpers <= 0 or len(tasks) <= 1:
        for task in tasks:
            yield function(task)
        return
    context = multiprocessing.get_context("spawn")  # safe with torch and OpenCV threads
    ready = context.SimpleQueue()
    executor = ProcessPoolExecutor(helpers, mp_context=context, initializer=_init_worker, initargs=(ready,))
    queue = collections.deque(tasks)
    submitted: set[Future] = set()
    started: list[int] = []  # process ids of the workers that are up
    try:
        # The executor spawns a worker per submission while none is idle: start them all now.
        warmups = {executor.submit(int) for _ in range(helpers)}
        while queue or submitted:
            while not ready.empty():
                started.append(ready.get())
            while queue and len(submitted) < UNITS_PER_WORKER * len(started):
                submitted.add(executor.submit(function, queue.popleft()))
            if queue and this_process_works:
                yield function(queue.popleft())
            else:
                wait(submitted | warmups, timeout=0.1, return_when=FIRST_COMPLETED)
            for future in [future for future in warmups if future.done()]:
                warmups.discard(future)
                future.result()  # raises BrokenProcessPool when a worker died while starting
            finished = {future for future in submitted if future.done()}
            submitted -= finished
            for future in finished:
                yield future.result()
    except BrokenProcessPool:
        raise WorkerDiedError("a sample worker process died (killed, or out of memory?); the finished units are "
                              "kept: rerun the same command to resume") from None
    except BaseException:
        # Ctrl-C, or an error here or in a worker: stop the workers now rather than let them finish
        # the units they hold (the executor has no terminate before Python 3.14).  A unit cut
        # half-way was never published; a rerun cuts it again.
        while not ready.empty():
            started.append(ready.get())
        for pid in started:
            try:
                os.kill(pid, signal.SIGTERM)
            except OSError:  # already gone
                pass
        raise
    finally:
        executor.shutdown(wait=True, cancel_futures=True)


def _init_worker(ready) -> None:
    # Each worker is one process per core: keep libraries from spawning threads of their own.
    import cv2
    import torch

    bound_onednn_cache()  # before this worker's first convolution (heap.py)
    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    ready.put(os.getpid())
