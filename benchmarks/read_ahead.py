"""Reading images ahead: the detection loop over image files, with and without a background reader.

``detection.runner.detect_batches`` (the loop behind ``detect``, ``eval fddb``, ``eval wider`` and
``eval landmarks``) reads the next batch of images in a background thread while the cascade
detects the current one.  This script times that loop both ways over the same files, in one
run: **ours** (``read_ahead=True``) and the **baseline** (``read_ahead=False``: read a batch, then
detect it, as the loop did before), end to end from the JPEG files to the detections::

    python benchmarks/read_ahead.py --weights RUN_DIR --images 64 --threads 1

``--weights``: a run folder with ``pnet.pt``, ``rnet.pt``, ``onet.pt`` (any trained run, or
``mtcnn-train import-weights``'s output).  Images: the first N of WIDER FACE train in the order of
the official annotation file (``--wider``) or every JPEG under ``--folder``.  Rounds alternate the
two loops (so load from other processes hits both alike); the best round of each counts.  The
detections of both loops are compared (they must be identical: reading ahead changes when an
image is read, not what is detected).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from mtcnn_train.config import DetectionConfig  # noqa: E402
from mtcnn_train.detection.cascade import Cascade  # noqa: E402
from mtcnn_train.detection.runner import detect_batches  # noqa: E402
from mtcnn_train.io import load_image  # noqa: E402


def image_paths(args: argparse.Namespace) -> list[Path]:
    if args.folder is not None:
        return sorted(args.folder.rglob("*.jpg"))[:args.images]
    from mtcnn_train.datasets.wider import read_wider, wider_paths

    return [record.image_path for record in read_wider(*wider_paths(args.wider, "train"))[:args.images]]


def run_loop(cascade: Cascade, paths: list[Path], batch: int, read_ahead: bool) -> tuple[float, float, list]:
    """Wall and CPU seconds of one pass of the loop, and its detections (boxes and scores)."""
    wall, cpu = time.perf_counter(), time.process_time()
    found = []
    for _, batch_found in detect_batches(cascade, paths, load_image, batch, read_ahead=read_ahead):
        found.extend((d.boxes, d.scores) for _, _, d in batch_found)
    return time.perf_counter() - wall, time.process_time() - cpu, found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--weights", type=Path, required=True, help="run folder with pnet.pt, rnet.pt, onet.pt")
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--batch", type=int, default=1, help="images per detect_batch call (detect uses 1, "
                                                              "evaluation detection.batch_size)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--wider", type=Path,
                        default=Path(os.environ.get("MTCNN_SHARED_DATA", REPO.parent / "shared" / "data")) / "wider_face")
    parser.add_argument("--folder", type=Path, help="time the JPEGs under this folder instead of WIDER's")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    paths = image_paths(args)
    if not paths:
        sys.exit("no images found (give --wider or --folder)")
    cascade = Cascade.from_run_dir(args.weights, DetectionConfig(), device=args.device)
    run_loop(cascade, paths[:2], 1, False)  # warm-up: allocations, oneDNN primitives
    best = {"baseline": None, "ours": None}
    outputs = {}
    for _ in range(args.rounds):
        for name, ahead in (("baseline", False), ("ours", True)):
            wall, cpu, found = run_loop(cascade, paths, args.batch, ahead)
            outputs[name] = found
            if best[name] is None or wall < best[name][0]:
                best[name] = (wall, cpu)
    same = len(outputs["ours"]) == len(outputs["baseline"]) and all(
        np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1]) for a, b in zip(outputs["ours"], outputs["baseline"]))
    load = os.getloadavg()[0]
    n = len(paths)
    print(f"{n} images, batch {args.batch}, {torch.get_num_threads()} torch thread(s), device {args.device}, "
          f"best of {args.rounds} rounds; load average {load:.1f}; {os.cpu_count()} logical CPUs")
    for name in ("baseline", "ours"):
        wall, cpu = best[name]
        print(f"  {name:8s} {n / wall:6.2f} img/s  ({wall:.2f} s wall, {cpu:.2f} s CPU)")
    print(f"  ratio ours/baseline {best['baseline'][0] / best['ours'][0]:.2f}x (images per second); "
          f"detections identical: {same}")
    if not same:
        sys.exit(1)


if __name__ == "__main__":
    main()
