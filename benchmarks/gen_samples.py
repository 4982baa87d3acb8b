"""gen-samples (P-Net) against the common practice: one JPEG per crop plus a text list.

The baseline follows the widely copied ``gen_12net_data.py`` recipe, written out here: per image
``cv2.imread``; a Python loop drawing random squares until 50 negatives are found; per face 5
squares near it (negatives) and 20 shifted and scaled squares (positives / part faces); for each
kept crop a ``cv2.resize`` to 12x12 and a ``cv2.imwrite`` of its own JPEG, plus a line
``path label [offsets]`` in a list file.  It uses the same IoU bands, face-size rule, per-image
counts, images and seed as ours; it runs in one process, as those scripts do.

Ours is ``generate_samples`` (stage ``pnet``) on the same images (WIDER part only, no landmark list, no
validation hold-out), timed end to end (reading annotations, cutting, the ratio mix, writing
shards and manifest).  Ours keeps only the ratio subset of what it cuts, so disk use is compared
per stored crop as well as in total.

Usage::

    python benchmarks/gen_samples.py --wider-root ../shared/data/wider_face --images 200 --workers 2
"""
from __future__ import annotations

import argparse
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from mtcnn_train.config import load_config  # noqa: E402
from mtcnn_train.datasets.wider import read_wider, wider_paths  # noqa: E402
from mtcnn_train.samples.generate import generate_samples  # noqa: E402


def disk_bytes(folder: Path) -> tuple[int, int, int]:
    """(bytes allocated on disk, apparent bytes, file count) of everything under ``folder``."""
    allocated = apparent = files = 0
    for root, _, names in os.walk(folder):
        for name in names:
            st = os.stat(os.path.join(root, name))
            allocated += st.st_blocks * 512
            apparent += st.st_size
            files += 1
    return allocated, apparent, files


def cpu_seconds() -> float:
    """CPU time of this process and its finished child processes (the workers)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one box with many (the baseline's own helper, as in those scripts)."""
    if len(boxes) == 0:
        return np.zeros(1)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    w = np.maximum(0, np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0]))
    h = np.maximum(0, np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1]))
    inter = w * h
    return inter / np.maximum(area + areas - inter, 1e-9)


def baseline(records, out: Path, seed: int, cfg) -> int:
    """The per-JPEG recipe; returns the number of crops written."""
    s = cfg.sampling
    rng = np.random.RandomState(seed)
    dirs = {name: out / name for name in ("positive", "part", "negative")}
    for d in dirs.values():
        d.mkdir(parents=True, exist_ok=True)
    lists = {name: open(out / f"{name}_12.txt", "w") for name in dirs}
    counter = {name: 0 for name in dirs}

    def save(kind: str, crop: np.ndarray, label: int, offsets=None) -> None:
        path = dirs[kind] / f"{counter[kind]}.jpg"
        cv2.imwrite(str(path), crop)
        extra = "" if offsets is None else " " + " ".join(f"{v:.2f}" for v in offsets)
        lists[kind].write(f"{kind}/{counter[kind]}.jpg {label}{extra}\n")
        counter[kind] += 1

    for record in records:
        img = cv2.imread(str(record.image_path))
        if img is None:
            continue
        height, width = img.shape[:2]
        boxes = record.boxes.astype(np.float64)
        kept = 0
        tries = 0
        while kept < s.random_negatives_per_image and tries < 20 * s.random_negatives_per_image:
            tries += 1
            size = rng.randint(12, max(13, min(width, height) // 2 + 1))
            nx, ny = rng.randint(0, width - size + 1), rng.randint(0, height - size + 1)
            crop_box = np.array([nx, ny, nx + size, ny + size])
            iou = _iou(crop_box, boxes)
            resized = cv2.resize(img[ny:ny + size, nx:nx + size], (12, 12), interpolation=cv2.INTER_LINEAR)
            if np.max(iou) < s.neg_iou:
                save("negative", resized, 0)
                kept += 1
        for k, (x1, y1, x2, y2) in enumerate(boxes):
            w, h = x2 - x1, y2 - y1
            if record.flags["invalid"][k] or min(w, h) < s.min_face_size or x1 < 0 or y1 < 0:
                continue
            for _ in range(s.negatives_per_face):
                size = rng.randint(12, max(13, min(width, height) // 2 + 1))
                dx = rng.randint(max(-size, -x1), w)
                dy = rng.randint(max(-size, -y1), h)
                nx1, ny1 = int(max(0, x1 + dx)), int(max(0, y1 + dy))
                if nx1 + size > width or ny1 + size > height:
                    continue
                crop_box = np.array([nx1, ny1, nx1 + size, ny1 + size])
                if np.max(_iou(crop_box, boxes)) < s.neg_iou:
                    crop = img[ny1:ny1 + size, nx1:nx1 + size]
                    save("negative", cv2.resize(crop, (12, 12), interpolation=cv2.INTER_LINEAR), 0)
            for _ in range(s.crops_per_face):
                size = rng.randint(int(min(w, h) * 0.8), int(np.ceil(1.25 * max(w, h))) + 1)
                dx = rng.uniform(-w * 0.2, w * 0.2)
                dy = rng.uniform(-h * 0.2, h * 0.2)
                nx1 = int(max(x1 + w / 2 + dx - size / 2, 0))
                ny1 = int(max(y1 + h / 2 + dy - size / 2, 0))
                nx2, ny2 = nx1 + size, ny1 + size
                if nx2 > width or ny2 > height:
                    continue
                crop_box = np.array([nx1, ny1, nx2, ny2])
                offsets = ((x1 - nx1) / size, (y1 - ny1) / size, (x2 - nx2) / size, (y2 - ny2) / size)
                resized = cv2.resize(img[ny1:ny2, nx1:nx2], (12, 12), interpolation=cv2.INTER_LINEAR)
                iou = np.max(_iou(crop_box, boxes))
                if iou > s.pos_iou:
                    save("positive", resized, 1, offsets)
                elif iou >= s.part_iou:
                    save("part", resized, -1, offsets)
    for fh in lists.values():
        fh.close()
    return sum(counter.values())


def run_baseline(annotation: Path, images_root: Path, images: int, out: Path, seed: int, cfg) -> dict:
    # Timed from reading the annotations to the last file written, like ours.
    wall, cpu = time.perf_counter(), cpu_seconds()
    records = read_wider(annotation, images_root)[:images]
    crops = baseline(records, out, seed, cfg)
    result = {"seconds": time.perf_counter() - wall, "cpu": cpu_seconds() - cpu, "crops": crops, "stored": crops,
              "images": len(records)}
    result["disk"], result["apparent"], result["files"] = disk_bytes(out)
    return result


def run_ours(cfg, out: Path) -> dict:
    wall, cpu = time.perf_counter(), cpu_seconds()
    report = generate_samples(cfg, out, "pnet", progress=False)
    result = {"seconds": time.perf_counter() - wall, "cpu": cpu_seconds() - cpu, "crops": report.crops_cut,
              "stored": sum(report.counts.values())}
    result["disk"], result["apparent"], result["files"] = disk_bytes(out)
    return result


def median_run(runs: list[dict]) -> dict:
    """The run of median wall time (the machine may be shared; alternating runs share its load)."""
    return sorted(runs, key=lambda r: r["seconds"])[len(runs) // 2]


def describe(name: str, r: dict) -> str:
    return (f"{name}: {r['crops']} crops in {r['seconds']:.2f} s wall, {r['cpu']:.2f} s CPU = "
            f"{r['crops'] / r['seconds']:.0f} crops/s; {r['stored']} stored in {r['files']} files, "
            f"{r['disk'] / 1e6:.2f} MB on disk ({r['apparent'] / 1e6:.2f} MB apparent) = "
            f"{r['disk'] / max(r['stored'], 1):.0f} B/stored crop")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--wider-root", type=Path, default=REPO.parent / "shared" / "data" / "wider_face")
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--workers", default="2", help="Worker counts to time ours with, e.g. 1,2.")
    parser.add_argument("--repeat", type=int, default=3, help="Alternating runs of each; the median is shown.")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", type=Path, default=None, help="Scratch folder (default: a temp folder).")
    args = parser.parse_args()
    worker_counts = [int(w) for w in args.workers.split(",")]

    def config(workers: int):
        return load_config(None, [f"data.wider_root={args.wider_root.resolve()}", f"data.max_images={args.images}",
                                  "data.val_fraction=0", f"sampling.seed={args.seed}", f"sampling.workers={workers}"])

    annotation, images_root = wider_paths(args.wider_root)
    base_runs: list[dict] = []
    our_runs: dict[int, list[dict]] = {w: [] for w in worker_counts}
    scratch = Path(tempfile.mkdtemp(prefix="bench-gen-samples-", dir=args.workdir))
    try:
        for round_ in range(args.repeat):
            base_runs.append(run_baseline(annotation, images_root, args.images, scratch / f"baseline{round_}",
                                          args.seed, config(1)))
            shutil.rmtree(scratch / f"baseline{round_}")
            for workers in worker_counts:
                our_runs[workers].append(run_ours(config(workers), scratch / f"ours{workers}-{round_}"))
                shutil.rmtree(scratch / f"ours{workers}-{round_}")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    base = median_run(base_runs)
    print(f"{base['images']} WIDER images from {args.wider_root}, seed {args.seed}, {os.cpu_count()} CPU cores, "
          f"median of {args.repeat} alternating runs; load average now {os.getloadavg()[0]:.1f}")
    print(describe("baseline (1 process, one JPEG per crop + text list)", base))
    for workers, runs in our_runs.items():
        ours = median_run(runs)
        print(describe(f"ours ({workers} worker{'s' if workers > 1 else ''}, shards)", ours))
        speed = (ours["crops"] / ours["seconds"]) / (base["crops"] / base["seconds"])
        per_cpu = (ours["crops"] / ours["cpu"]) / (base["crops"] / base["cpu"])
        disk = (ours["disk"] / ours["stored"]) / (base["disk"] / base["stored"])
        print(f"  ours/baseline: {speed:.1f}x crops per second, {per_cpu:.1f}x crops per CPU second; "
              f"disk per stored crop {disk:.3f}x (whole folder {ours['disk'] / base['disk']:.3f}x)")


if __name__ == "__main__":
    main()
