"""Detection speed on the CPU: the cascade with its nets in PyTorch vs in onnxruntime, same weights.

Both cascades are ours (:class:`mtcnn_train.detection.cascade.Cascade`), with the same weights and settings;
one calls the PyTorch nets, the other the same nets exported with ``mtcnn-train export --format
onnx`` and run by onnxruntime (:meth:`Cascade.from_onnx_dir`).  The pyramid, crops and NMS are the
same torch code in both, so the difference is the nets' runtime.  Needs the ``onnx`` extra::

    python benchmarks/onnx_speed.py --weights RUN_DIR [--images 20] [--threads 1,2] [--rounds 2]

Images: the first N of WIDER FACE train (``--wider``, default ``../shared/data/wider_face``, in the
order of the official annotation file) at their own size, one at a time; synthetic WIDER-style
images (``mtcnn_train.synthetic``) when that folder is absent.  For each thread count T, torch gets
``torch.set_num_threads(T)`` (both cascades run their torch parts with it) and onnxruntime
``intra_op_num_threads=T``.  Each timed round runs every image through both cascades in turn
(interleaved, so load from other processes hits both alike); the best round counts.  Outputs are
compared in the first round: every box of each side has a partner at IoU >= 0.99 on the other, and
matched landmarks agree within 0.05 px.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from mtcnn_train.config import DetectionConfig  # noqa: E402
from mtcnn_train.detection.cascade import Cascade  # noqa: E402
from mtcnn_train.detection.export import export_models  # noqa: E402
from mtcnn_train.io import load_image  # noqa: E402
from mtcnn_train.detection.weights_import import add_counts, parity_counts  # noqa: E402

MIN_IOU = 0.99
MAX_POINT_ERROR = 0.05


def wider_images(root: Path, count: int) -> list[Path]:
    """The first ``count`` images in the order of the official train annotation file (none if absent)."""
    from mtcnn_train.datasets.wider import read_wider, wider_paths

    annotations, images = wider_paths(root, "train")
    if not annotations.is_file():
        return []
    return [r.image_path for r in read_wider(annotations, images)[:count] if r.image_path.is_file()]


def load_images(wider: Path, count: int) -> tuple[list[np.ndarray], str]:
    paths = wider_images(wider, count)
    if paths:
        return [load_image(p) for p in paths], f"{len(paths)} WIDER FACE train images (own sizes)"
    from mtcnn_train.synthetic import wider_image

    return ([wider_image(0, "wider_val", i)[1] for i in range(count)],
            f"{count} synthetic WIDER-style images (no WIDER FACE under {wider})")


def weights_dir(path: Path | None) -> Path:
    if path is not None:
        return path
    from mtcnn_train.detection.weights_import import import_facenet_weights

    out = Path(tempfile.mkdtemp(prefix="mtcnn-onnx-bench-"))
    try:
        import_facenet_weights(None, out)
    except Exception as exc:  # facenet-pytorch absent
        sys.exit(f"pass --weights RUN_DIR (pnet.pt, rnet.pt, onet.pt): no facenet-pytorch weights to import ({exc})")
    return out


def timed(fn, *args):
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn(*args)
    return out, time.perf_counter() - wall, time.process_time() - cpu


def run_threads(torch_cascade: Cascade, onnx_cascade: Cascade, images: list[np.ndarray], rounds: int) -> dict:
    best: dict[str, tuple[float, float] | None] = {"torch": None, "onnx": None}
    parity: dict = {}
    for image in images[:2]:  # warm-up
        torch_cascade.detect(image)
        onnx_cascade.detect(image)
    for round_index in range(rounds):
        totals = {"torch": [0.0, 0.0], "onnx": [0.0, 0.0]}
        for image in images:
            ref, wall, cpu = timed(torch_cascade.detect, image)
            totals["torch"][0] += wall
            totals["torch"][1] += cpu
            got, wall, cpu = timed(onnx_cascade.detect, image)
            totals["onnx"][0] += wall
            totals["onnx"][1] += cpu
            if round_index == 0:
                add_counts(parity, parity_counts(ref.boxes, ref.landmarks, got.boxes, got.landmarks,
                                                 min_iou=MIN_IOU, max_point_error=MAX_POINT_ERROR))
        for name, (wall, cpu) in totals.items():
            if best[name] is None or wall < best[name][0]:
                best[name] = (wall, cpu)
    return {"torch": best["torch"], "onnx": best["onnx"], "parity": parity}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--weights", type=Path, default=None,
                        help="run folder with pnet.pt, rnet.pt, onet.pt (default: import facenet-pytorch's)")
    parser.add_argument("--images", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", default="1,2", help="comma-separated thread counts")
    parser.add_argument("--wider", type=Path,
                        default=Path(os.environ.get("MTCNN_SHARED_DATA", REPO.parent / "shared" / "data")) / "wider_face")
    args = parser.parse_args()
    try:
        import onnxruntime
    except ImportError:
        sys.exit("onnxruntime is not installed: pip install 'mtcnn-train[onnx]'")
    weights = weights_dir(args.weights)
    onnx_dir = Path(tempfile.mkdtemp(prefix="mtcnn-onnx-"))
    export_models(weights, "onnx", onnx_dir)
    images, described = load_images(args.wider, args.images)
    cfg = DetectionConfig(device="cpu")  # defaults: min face 20, factor 0.709, thresholds 0.6/0.7/0.7
    cpu_name = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                     if line.startswith("model name")), "unknown CPU") if Path("/proc/cpuinfo").exists() else "unknown CPU"
    print(f"machine: {cpu_name}, {os.cpu_count()} logical CPUs, torch {torch.__version__}, "
          f"onnxruntime {onnxruntime.__version__}; load average {os.getloadavg()[0]:.1f}")
    print(f"weights: {weights}; {described}; one image at a time; best of {args.rounds} rounds")
    rows = []
    for threads in (int(t) for t in args.threads.split(",")):
        torch.set_num_threads(threads)
        torch_cascade = Cascade.from_run_dir(weights, cfg, device="cpu")
        onnx_cascade = Cascade.from_onnx_dir(onnx_dir, cfg, threads=threads)
        result = run_threads(torch_cascade, onnx_cascade, images, args.rounds)
        rows.append((threads, result))
        (tw, tc), (ow, oc), p = result["torch"], result["onnx"], result["parity"]
        n = len(images)
        print(f"{threads} thread(s): pytorch {n / tw:6.2f} img/s  onnxruntime {n / ow:6.2f} img/s  "
              f"ratio onnx/pytorch {tw / ow:4.2f}x (CPU time ratio {tc / oc:4.2f}x)  "
              f"boxes matched {p['ref_matched']}/{p['ref']} pytorch, {p['ours_matched']}/{p['ours']} onnx; "
              f"landmarks within {MAX_POINT_ERROR} px {p['points_ok']}/{p['points_checked']}; "
              f"load average {os.getloadavg()[0]:.1f}", flush=True)
    print("\n| threads | PyTorch img/s | onnxruntime img/s | ONNX / PyTorch (wall) | ONNX / PyTorch (CPU time) "
          "| boxes matched (PyTorch / ONNX) |")
    print("|---|---|---|---|---|---|")
    for threads, r in rows:
        (tw, tc), (ow, oc), p, n = r["torch"], r["onnx"], r["parity"], len(images)
        print(f"| {threads} | {n / tw:.2f} | {n / ow:.2f} | {tw / ow:.2f}x | {tc / oc:.2f}x | "
              f"{p['ref_matched']}/{p['ref']} / {p['ours_matched']}/{p['ours']} |")


if __name__ == "__main__":
    main()
