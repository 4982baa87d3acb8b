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

``--backends torch,torch-packed`` adds our cascade with ``detection.packed_pyramid`` (P-Net once
over all pyramid levels of an image, packed into one canvas) as a further row.
``--backends torch,onnx,onnx-int8`` adds our cascade on onnxruntime (fp32, and with the int8 nets
of ``export --format onnx --int8``, calibrated on ``--calibration`` sample folders) as further rows,
timed in the same interleaved rounds (onnxruntime needs to be installed in the venv; its threads
follow ``--threads``).  The int8 rows' "boxes matched" show how far int8 moves the boxes.
"""
from __future__ import annotations

import argparse
import dataclasses
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


def run_mode(theirs, ours: dict, groups: list[list[np.ndarray]], device: str, rounds: int) -> dict:
    """Time facenet-pytorch and each of our cascades (``{backend: Cascade}``) over ``groups`` (one
    image or one batch each) for ``rounds`` rounds; each backend's boxes are compared with theirs."""
    best: dict = dict.fromkeys(["facenet", *ours])
    parity: dict = {name: {} for name in ours}
    for round_index in range(rounds):
        clocks = {name: Clock(device) for name in best}
        for group in groups:
            batch = np.stack(group) if len(group) > 1 else group[0]
            boxes, _, points = clocks["facenet"](theirs.detect, batch, landmarks=True)
            if len(group) == 1:
                boxes, points = [boxes], [points]
            for name, cascade in ours.items():
                dets = clocks[name](cascade.detect_batch, group)
                if round_index == 0:
                    for b, p, d in zip(boxes, points, dets):
                        ref_boxes, ref_points = facenet_to_edges(b, p)
                        add_counts(parity[name], parity_counts(ref_boxes, ref_points, d.boxes, d.landmarks))
        for name, clock in clocks.items():
            if best[name] is None or clock.wall < best[name].wall:
                best[name] = clock
    images = sum(len(g) for g in groups)
    return {"images": images, "clocks": best, "parity": parity}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=50)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--devices", default="auto", help="cpu, cuda, or auto (cpu, plus cuda when present)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--modes", default="single,batched")
    parser.add_argument("--backends", default="torch",
                        help="our cascades to time: torch, torch-packed, onnx, onnx-int8 (comma-separated; onnx ones on the CPU)")
    parser.add_argument("--calibration", type=Path, action="append", default=[],
                        help="sample folder(s) for the onnx-int8 backend's calibration (repeatable)")
    parser.add_argument("--int8-nets", default="rnet,onet", help="nets the onnx-int8 backend quantises")
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
    backends = args.backends.split(",")
    export_dirs = {}
    if "onnx" in backends:
        from mtcnn_train.detection.export import export_models

        export_dirs["onnx"] = weights / "onnx"
        export_models(weights, "onnx", export_dirs["onnx"])
    if "onnx-int8" in backends:
        from mtcnn_train.quantize import export_int8

        export_dirs["onnx-int8"] = weights / "onnx-int8"
        record = export_int8(weights, export_dirs["onnx-int8"], args.calibration, int8_stages=args.int8_nets)
        print(f"int8 nets: {', '.join(record['int8']['int8_nets']) or 'none'} ({record['int8']['toolkit']}, "
              f"{record['int8']['format']}); calibrated on {', '.join(map(str, args.calibration))}")
    rows = []
    for device in devices:
        cfg = DetectionConfig(crop_border="clip", batch_size=args.batch)
        packed_cfg = dataclasses.replace(cfg, packed_pyramid=True)
        ours = {backend: Cascade.load(weights, packed_cfg, backend="torch", device=device) if backend == "torch-packed"
                else Cascade.load(export_dirs.get(backend, weights), cfg, backend=backend, device=device)
                for backend in backends if backend.startswith("torch") or device == "cpu"}
        theirs = MTCNN(keep_all=True, device=device, min_face_size=20, thresholds=[0.6, 0.7, 0.7], factor=0.709)
        for im in originals[:2]:  # warm-up: allocator, kernels
            theirs.detect(im, landmarks=True)
            for cascade in ours.values():
                cascade.detect(im)
        for mode in args.modes.split(","):
            groups = [[im] for im in originals] if mode == "single" else batches
            result = run_mode(theirs, ours, groups, device, args.rounds)
            f, n = result["clocks"]["facenet"], result["images"]
            for backend in ours:
                rows.append((device, mode, backend, result))
                o, p = result["clocks"][backend], result["parity"][backend]
                print(f"{device:4s} {mode:8s} facenet {n / f.wall:6.2f} img/s  ours ({backend}) {n / o.wall:6.2f} img/s  "
                      f"ratio {f.wall / o.wall:4.2f}x (CPU time ratio {f.cpu / o.cpu:4.2f}x)  "
                      f"boxes matched {p['ref_matched']}/{p['ref']} theirs, {p['ours_matched']}/{p['ours']} ours; "
                      f"landmarks within 2 px {p['points_ok']}/{p['points_checked']}", flush=True)
    print("\n| device | mode | ours | facenet-pytorch img/s | ours img/s | speed-up (wall) | speed-up (CPU time) | "
          "boxes matched (theirs / ours) |")
    print("|---|---|---|---|---|---|---|---|")
    for device, mode, backend, r in rows:
        f, o, p, n = r["clocks"]["facenet"], r["clocks"][backend], r["parity"][backend], r["images"]
        print(f"| {device} | {mode} | {backend} | {n / f.wall:.2f} | {n / o.wall:.2f} | {f.wall / o.wall:.2f}x | "
              f"{f.cpu / o.cpu:.2f}x | {p['ref_matched']}/{p['ref']} / {p['ours_matched']}/{p['ours']} |")


if __name__ == "__main__":
    main()
