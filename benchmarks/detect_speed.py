"""Detection speed: our cascade vs facenet-pytorch's MTCNN, same weights, same settings, same images.

Needs both packages in one interpreter.  facenet-pytorch pins old torch versions, so give it its own
venv and put this repository on the path::

    python3 -m venv /tmp/fpvenv
    /tmp/fpvenv/bin/pip install torch torchvision numpy pillow opencv-python-headless requests pyyaml click tqdm
    /tmp/fpvenv/bin/pip install --no-deps facenet-pytorch==2.6.0
    PYTHONPATH=. /tmp/fpvenv/bin/python benchmarks/detect_speed.py --images 50

Images are the first N of WIDER FACE train (``--wider``, default ``../shared/data/wider_face``),
in the order of the official annotation file.  Modes: one image at a time (original sizes), and
batches of ``--batch`` images resized to 1024x768.  Each timed round runs every image through
both detectors in turn (interleaved, so load from other processes hits both alike); the best
round counts.  Our cascade uses ``crop_border=clip`` (facenet-pytorch's crops); outputs are
compared on every run (boxes matched at IoU >= 0.95 both ways, landmarks within 2 px).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from mtcnn_train.config import DetectionConfig  # noqa: E402
from mtcnn_train.detection.cascade import Cascade  # noqa: E402
from mtcnn_train.io import load_image  # noqa: E402
from mtcnn_train.detection.weights_import import add_counts, facenet_to_edges, import_facenet_weights, parity_counts  # noqa: E402


def wider_images(root: Path, count: int) -> list[Path]:
    """The first ``count`` images in the order of the official train annotation file."""
    from mtcnn_train.datasets.wider import read_wider, wider_paths

    return [record.image_path for record in read_wider(*wider_paths(root, "train"))[:count]]


class Clock:
    """Wall and process CPU time of a call; CUDA work is awaited before the clock stops."""

    def __init__(self, device: str) -> None:
        self.device = device
        self.wall = 0.0
        self.cpu = 0.0

    def __call__(self, fn, *args, **kwargs):
        if self.device == "cuda":
            torch.cuda.synchronize()
        wall, cpu = time.perf_counter(), time.process_time()
        out = fn(*args, **kwargs)
        if self.device == "cuda":
            torch.cuda.synchronize()
        self.wall += time.perf_counter() - wall
        self.cpu += time.process_time() - cpu
        return out


def run_mode(theirs, ours, groups: list[list[np.ndarray]], device: str, rounds: int) -> dict:
    """Time both detectors over ``groups`` (one image or one batch each) for ``rounds`` rounds."""
    best = {"facenet": None, "ours": None}
    parity: dict = {}
    for round_index in range(rounds):
        clocks = {"facenet": Clock(device), "ours": Clock(device)}
        for group in groups:
            batch = np.stack(group) if len(group) > 1 else group[0]
            boxes, _, points = clocks["facenet"](theirs.detect, batch, landmarks=True)
            dets = clocks["ours"](ours.detect_batch, group)
            if round_index == 0:
                if len(group) == 1:
                    boxes, points = [boxes], [points]
                for b, p, d in zip(boxes, points, dets):
                    ref_boxes, ref_points = facenet_to_edges(b, p)
                    add_counts(parity, parity_counts(ref_boxes, ref_points, d.boxes, d.landmarks))
        for name, clock in clocks.items():
            if best[name] is None or clock.wall < best[name].wall:
                best[name] = clock
    images = sum(len(g) for g in groups)
    return {"images": images, "facenet": best["facenet"], "ours": best["ours"], "parity": parity}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=50)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--devices", default="auto", help="cpu, cuda, or auto (cpu, plus cuda when present)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--modes", default="single,batched")
    parser.add_argument("--wider", type=Path,
                        default=Path(os.environ.get("MTCNN_SHARED_DATA", REPO.parent / "shared" / "data")) / "wider_face")
    args = parser.parse_args()
    try:
        from facenet_pytorch import MTCNN
    except ImportError as exc:
        sys.exit(f"facenet-pytorch is not importable here ({exc}); see this script's docstring for its venv")
    if args.threads:
        torch.set_num_threads(args.threads)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else []) if args.devices == "auto" else args.devices.split(",")
    paths = wider_images(args.wider, args.images)
    if not paths:
        sys.exit(f"no WIDER FACE images found under {args.wider}")
    originals = [load_image(p) for p in paths]
    resized = [cv2.resize(im, (1024, 768), interpolation=cv2.INTER_AREA) for im in originals]
    batches = [resized[i:i + args.batch] for i in range(0, len(resized), args.batch)]
    weights = Path(tempfile.mkdtemp(prefix="mtcnn-bench-"))
    import_facenet_weights(None, weights)
    cpu_name = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                     if line.startswith("model name")), "unknown CPU") if Path("/proc/cpuinfo").exists() else "unknown CPU"
    print(f"machine: {cpu_name}, {os.cpu_count()} logical CPUs, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; load average {os.getloadavg()[0]:.1f}")
    if "cuda" in devices:
        print(f"gpu: {torch.cuda.get_device_name(0)}")
    print(f"{len(paths)} WIDER FACE images; batched mode: {len(batches)} batches of up to {args.batch} at 1024x768; "
          f"best of {args.rounds} rounds")
    rows = []
    for device in devices:
        ours = Cascade.from_run_dir(weights, DetectionConfig(crop_border="clip", batch_size=args.batch), device=device)
        theirs = MTCNN(keep_all=True, device=device, min_face_size=20, thresholds=[0.6, 0.7, 0.7], factor=0.709)
        for im in originals[:2]:  # warm-up: allocator, kernels
            theirs.detect(im, landmarks=True)
            ours.detect(im)
        for mode in args.modes.split(","):
            groups = [[im] for im in originals] if mode == "single" else batches
            result = run_mode(theirs, ours, groups, device, args.rounds)
            rows.append((device, mode, result))
            f, o, p = result["facenet"], result["ours"], result["parity"]
            n = result["images"]
            print(f"{device:4s} {mode:8s} facenet {n / f.wall:6.2f} img/s  ours {n / o.wall:6.2f} img/s  "
                  f"ratio {f.wall / o.wall:4.2f}x (CPU time ratio {f.cpu / o.cpu:4.2f}x)  "
                  f"boxes matched {p['ref_matched']}/{p['ref']} theirs, {p['ours_matched']}/{p['ours']} ours; "
                  f"landmarks within 2 px {p['points_ok']}/{p['points_checked']}", flush=True)
    print("\n| device | mode | facenet-pytorch img/s | ours img/s | speed-up (wall) | speed-up (CPU time) | boxes matched (theirs / ours) |")
    print("|---|---|---|---|---|---|---|")
    for device, mode, r in rows:
        f, o, p, n = r["facenet"], r["ours"], r["parity"], r["images"]
        print(f"| {device} | {mode} | {n / f.wall:.2f} | {n / o.wall:.2f} | {f.wall / o.wall:.2f}x | {f.cpu / o.cpu:.2f}x | "
              f"{p['ref_matched']}/{p['ref']} / {p['ours_matched']}/{p['ours']} |")


if __name__ == "__main__":
    main()
