"""Full scale by simulation: how gen-samples' memory and time per image grow with the image count.

For fractions 1/16, 1/4 and 1 of a simulated full-size set (``--images N``, default 12,880, the
size of WIDER FACE train, and ``--landmark-faces M``, default 202,599, CelebA's size) this renders
``make-synthetic --images n --faces wider --landmark-faces m`` (WIDER's face count and sizes; the
landmark list reusing 2,000 rendered CelebA-format images) into a cache folder (reused across
runs; ``--tiny`` keeps the demo scenes), then runs ``gen-samples --stage pnet`` and the mining steps ``gen-samples --stage
rnet`` and ``--stage onet`` with trained nets (``--weights RUN_DIR``; without it the nets of a
quick ``demo`` run, trained once into the cache).  Every step is a ``python -m mtcnn_train``
subprocess; per step it records

* wall time, time per image (wall / images sampled, from the manifest) and crops per second
  (stored crops / wall, and crops cut / wall);
* peak resident memory of every process of the step's process tree (the CLI and its workers):
  /proc/<pid>/status (VmHWM, VmRSS) polled every ``--poll`` seconds; the largest single process,
  the largest sum of the tree's resident sets at one poll, and the children's ru_maxrss;
* disk: bytes of the output shard files per stored crop, and of the whole folder.

It writes ``OUT/scale.json`` and prints a markdown table with the ratios full / (1/16) of peak
memory and of time per image (acceptance: memory within 1.5x, time per image within 1.3x).

    python benchmarks/scale.py --out /tmp/scale                     # 805, 3,220, 12,880 images
    python benchmarks/scale.py --out /tmp/scale --stages pnet       # P-Net sampling only
    python benchmarks/scale.py --out /tmp/scale --weights RUN_DIR --fractions 1/16,1
    python benchmarks/scale.py --out /tmp/scale --tiny              # N=32, toy settings, seconds

Only the command line of the package is used (no imports of ``mtcnn_train``).  ``--set`` and
``--config`` are passed to gen-samples.  ``--tiny``: N=32, P-Net sampling only unless
``--weights``/``--stages`` say otherwise, and mining settings that keep it to seconds.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
STAGES = ("pnet", "rnet", "onet")
#: Overrides of the tiny mode: a coarse pyramid and a random-crop top-up so mining an untrained
#: or toy net takes seconds and always yields samples.
TINY_SETS = ["detection.min_face_size=64", "sampling.mining_thresholds=[0.5,0.1]", "sampling.mining_base_crops=true"]
PAGE = 1024  # /proc status figures are in kB
#: CelebA's size: the landmark faces of the full-size simulation (``--landmark-faces``).
CELEBA_FACES = 202_599
#: CelebA-format images rendered at most; more landmark faces reuse them (make-synthetic --landmark-faces).
CELEBA_RENDERED = 2000


def _status_kb(pid: int) -> tuple[int, int] | None:
    """(VmHWM, VmRSS) of ``pid`` in bytes, or None once it is gone (or a zombie without memory)."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    fields = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key in ("VmHWM", "VmRSS"):
            fields[key] = int(value.split()[0]) * PAGE
    if "VmHWM" not in fields:
        return None
    return fields["VmHWM"], fields.get("VmRSS", 0)


def _children(pid: int) -> list[int]:
    kids = []
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            try:
                kids += [int(k) for k in (task / "children").read_text().split()]
            except OSError:
                pass
    except OSError:
        pass
    return kids


def _tree(pid: int) -> list[int]:
    seen, todo = [], [pid]
    while todo:
        p = todo.pop()
        if p not in seen:
            seen.append(p)
            todo += _children(p)
    return seen


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()[:200]
    except OSError:
        return ""


def run_measured(cmd: list[str], log: Path, poll: float) -> dict:
    """Run ``cmd`` (output to ``log``) and poll the memory of its process tree until it ends."""
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    procs: dict[int, dict] = {}
    peak_tree = 0
    start = time.perf_counter()
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=REPO)
        while proc.poll() is None:
            tree_rss = 0
            for pid in _tree(proc.pid):
                figures = _status_kb(pid)
                if figures is None:
                    continue
                hwm, rss = figures
                tree_rss += rss
                entry = procs.setdefault(pid, {"pid": pid, "cmd": "", "peak_rss_bytes": 0})
                entry["cmd"] = entry["cmd"] or _cmdline(pid)  # empty until the child has started
                entry["peak_rss_bytes"] = max(entry["peak_rss_bytes"], hwm, rss)
            peak_tree = max(peak_tree, tree_rss)
            time.sleep(poll)
    wall = time.perf_counter() - start
    children_maxrss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024  # kB on Linux
    if proc.returncode != 0:
        lines = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
        raise SystemExit(f"failed ({proc.returncode}): {' '.join(cmd)}\n  {lines[-1] if lines else ''}\n  log: {log}")
    processes = sorted(procs.values(), key=lambda e: -e["peak_rss_bytes"])
    return {"wall_s": wall, "processes": processes, "num_processes": len(processes),
            "peak_rss_max_process_bytes": max([e["peak_rss_bytes"] for e in processes], default=0),
            "peak_rss_tree_bytes": peak_tree, "children_ru_maxrss_so_far_bytes": children_maxrss}


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "mtcnn_train", *map(str, args)]


def synthetic_set(cache: Path, images: int, poll: float, faces: str = "demo",
                  landmark_faces: int | None = None) -> tuple[Path, dict | None]:
    """The synthetic set of ``images`` training images in the cache (rendered once).

    ``faces="wider"``: WIDER train's face count and sizes; ``landmark_faces``: CelebA list
    entries reusing at most :data:`CELEBA_RENDERED` rendered images; WIDER val and FDDB stay tiny
    (the sample steps do not read them)."""
    args = ["--images", images]
    if faces != "demo":
        args += ["--faces", faces, "--eval-images", 8]
    if landmark_faces is not None:
        args += ["--landmark-faces", landmark_faces, "--celeba-images", min(CELEBA_RENDERED, landmark_faces)]
    folder = cache / ("synthetic-" + "-".join(map(str, [images, *args[2:]])).replace("--", ""))
    summary = folder / "summary.json"
    if summary.is_file() and json.loads(summary.read_text()).get("images") == images:
        return folder, None
    cache.mkdir(parents=True, exist_ok=True)
    return folder, run_measured(cli("make-synthetic", folder, *args), cache / f"make-synthetic-{folder.name}.log", poll)


def demo_weights(cache: Path, images: int, tiny: bool, poll: float) -> Path:
    """A run folder with pnet.pt, rnet.pt, onet.pt from ``demo`` (trained once into the cache)."""
    out = cache / f"demo-{images}{'-tiny' if tiny else ''}"
    run = out / "run"
    if not all((run / f"{s}.pt").is_file() for s in STAGES):
        sets = [f"train.{s}.epochs=1" for s in STAGES] + TINY_SETS if tiny else []
        args = ["demo", "--out", out, "--images", images, "--quiet"] + [x for s in sets for x in ("--set", s)]
        print(f"training the demo's nets into {run} (once) ...", flush=True)
        run_measured(cli(*args), cache / f"demo-{images}.log", poll)
    return run


def folder_bytes(folder: Path) -> tuple[int, int]:
    """(bytes of the shard files, bytes of every file) under ``folder``."""
    files = [p for p in folder.rglob("*") if p.is_file()]
    return sum(p.stat().st_size for p in files if p.name.startswith("shard-")), sum(p.stat().st_size for p in files)


def sample_step(stage: str, data: Path, out: Path, weights: Path | None, extra: list[str], poll: float) -> dict:
    args = ["gen-samples", "--stage", stage, "--out", out, "--wider-root", data / "wider",
            "--landmarks", data / "celeba" / "Anno" / "list_landmarks_celeba.txt", "--force", "--quiet"]
    if stage != "pnet":
        args += ["--weights", weights]
    out.parent.mkdir(parents=True, exist_ok=True)
    result = run_measured(cli(*args, *extra), out.parent / f"{stage}.log", poll)
    manifest = json.loads((out / "manifest.json").read_text())
    counts = manifest.get("input_counts") or {}
    images = int(counts.get("images") or 0)
    stored = int(manifest.get("num_samples") or 0)
    cut = int(counts.get("crops") or 0)
    shard_bytes, all_bytes = folder_bytes(out)
    wall = result["wall_s"]
    result.update({"images": images, "landmark_faces": int(counts.get("landmark_faces") or 0), "stored_crops": stored,
                   "crops_cut": cut, "counts": manifest.get("counts", {}),
                   "time_per_image_s": wall / images if images else None,
                   "stored_crops_per_s": stored / wall, "crops_cut_per_s": cut / wall if cut else None,
                   "shard_bytes": shard_bytes, "folder_bytes": all_bytes,
                   "bytes_per_stored_crop": shard_bytes / stored if stored else None})
    return result


def ratio(rows: dict, stage: str, key: str, low: str, high: str) -> float | None:
    a, b = rows.get(low, {}).get(stage, {}).get(key), rows.get(high, {}).get(stage, {}).get(key)
    return b / a if a and b else None


def report(result: dict) -> str:
    fracs = list(result["fractions"])
    lines = ["| fraction | images | step | wall s | s / image | stored crops | crops/s (stored) | B / crop "
             "| peak RSS, largest process MiB | peak RSS, tree MiB | processes |",
             "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for frac in fracs:
        for stage, r in result["fractions"][frac]["steps"].items():
            lines.append(f"| {frac} | {result['fractions'][frac]['images']} | {stage} | {r['wall_s']:.1f} "
                         f"| {r['time_per_image_s'] or 0:.4f} | {r['stored_crops']} | {r['stored_crops_per_s']:.0f} "
                         f"| {r['bytes_per_stored_crop'] or 0:.0f} | {r['peak_rss_max_process_bytes'] / 2**20:.0f} "
                         f"| {r['peak_rss_tree_bytes'] / 2**20:.0f} | {r['num_processes']} |")
    if result["ratios"]:
        low, high = fracs[0], fracs[-1]
        lines += ["", f"Ratios {high} / {low} (acceptance: peak memory within 1.5x, time per image within 1.3x):", "",
                  "| step | peak RSS, largest process | peak RSS, tree | time per image | memory ok | time ok |",
                  "|---|---:|---:|---:|---|---|"]
        for stage, r in result["ratios"].items():
            def fmt(v):
                return "-" if v is None else f"{v:.2f}x"
            lines.append(f"| {stage} | {fmt(r['peak_rss_max_process'])} | {fmt(r['peak_rss_tree'])} "
                         f"| {fmt(r['time_per_image'])} | {r['memory_ok']} | {r['time_ok']} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for scale.json and the sample sets")
    parser.add_argument("--images", type=int, default=None, help="full-size image count N (default 12,880; --tiny: 32)")
    parser.add_argument("--fractions", default="1/16,1/4,1", help="fractions of N, comma-separated")
    parser.add_argument("--stages", default=None, help="pnet, or pnet,rnet,onet (default: all; --tiny without --weights: pnet)")
    parser.add_argument("--weights", type=Path, default=None, help="run folder with pnet.pt, rnet.pt (default: a demo run)")
    parser.add_argument("--cache", type=Path, default=None, help="synthetic sets and demo nets (default: OUT/cache)")
    parser.add_argument("--demo-images", type=int, default=None, help="images of the demo run that trains the nets")
    parser.add_argument("--config", type=Path, default=None, help="config for gen-samples")
    parser.add_argument("--set", dest="sets", action="append", default=[], help="SECTION.KEY=VALUE for gen-samples")
    parser.add_argument("--workers", type=int, default=None, help="gen-samples --workers (default: automatic)")
    parser.add_argument("--poll", type=float, default=0.05, help="seconds between memory polls")
    parser.add_argument("--faces", choices=("demo", "wider"), default=None,
                        help="make-synthetic --faces (default: wider, WIDER train's face count and sizes; --tiny: demo)")
    parser.add_argument("--landmark-faces", type=int, default=None,
                        help="full-size CelebA-format landmark faces, scaled by each fraction (default 202,599; "
                             "--tiny: one per image)")
    parser.add_argument("--tiny", action="store_true", help="N=32 and toy settings: seconds")
    args = parser.parse_args()
    n = args.images or (32 if args.tiny else 12_880)
    stages = (args.stages or ("pnet" if args.tiny and not args.weights else ",".join(STAGES))).split(",")
    if any(s not in STAGES for s in stages) or stages != [s for s in STAGES if s in stages]:
        parser.error(f"--stages: some of {','.join(STAGES)}, in that order")
    fractions = [Fraction(f) for f in args.fractions.split(",")]
    sizes = {str(f): max(1, int(n * f)) for f in fractions}
    cache = args.cache or args.out / "cache"
    args.out.mkdir(parents=True, exist_ok=True)
    extra = (["--config", str(args.config)] if args.config else []) + (["--workers", str(args.workers)] if args.workers is not None else [])
    extra += [x for s in (TINY_SETS if args.tiny else []) + args.sets for x in ("--set", s)]
    weights = args.weights
    if weights is None and set(stages) - {"pnet"}:
        weights = demo_weights(cache, args.demo_images or (8 if args.tiny else 200), args.tiny, args.poll)
    result = {"machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.node()}",
              "date": time.strftime("%Y-%m-%d %H:%M:%S"), "full_images": n, "stages": stages,
              "faces": args.faces or ("demo" if args.tiny else "wider"),
              "full_landmark_faces": args.landmark_faces or (None if args.tiny else CELEBA_FACES),
              "weights": str(weights) if weights else None, "gen_samples_args": extra, "tiny": args.tiny,
              "load_average": os.getloadavg()[0], "fractions": {}, "ratios": {}}
    for frac, size in sizes.items():
        faces = args.faces or ("demo" if args.tiny else "wider")
        landmarks = args.landmark_faces or (None if args.tiny else CELEBA_FACES)
        data, rendered = synthetic_set(cache, size, args.poll, faces,
                                       None if landmarks is None else max(1, int(landmarks * Fraction(frac))))
        entry = {"images": size, "synthetic": str(data), "make_synthetic": rendered, "steps": {}}
        for stage in stages:
            print(f"{frac} of {n} = {size} images: gen-samples --stage {stage} ...", flush=True)
            entry["steps"][stage] = sample_step(stage, data, args.out / f"samples-{size}" / stage, weights, extra, args.poll)
        result["fractions"][frac] = entry
    if len(sizes) > 1:
        low, high = list(sizes)[0], list(sizes)[-1]
        rows = {f: e["steps"] for f, e in result["fractions"].items()}
        for stage in stages:
            mem = ratio(rows, stage, "peak_rss_max_process_bytes", low, high)
            tree = ratio(rows, stage, "peak_rss_tree_bytes", low, high)
            per_image = ratio(rows, stage, "time_per_image_s", low, high)
            result["ratios"][stage] = {"of": f"{high} / {low}", "peak_rss_max_process": mem, "peak_rss_tree": tree,
                                       "time_per_image": per_image,
                                       "memory_ok": None if mem is None or tree is None else max(mem, tree) <= 1.5,
                                       "time_ok": None if per_image is None else per_image <= 1.3}
    (args.out / "scale.json").write_text(json.dumps(result, indent=2) + "\n")
    print(report(result))
    print(f"\nwritten: {args.out / 'scale.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
