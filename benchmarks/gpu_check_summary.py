"""Summary of ``benchmarks/gpu_check.sh``: reads OUT_DIR/status/<part> and the parts' logs, writes
OUT_DIR/summary.json and OUT_DIR/summary.md, exits 1 when a part failed (skipped parts do not count).

Only the logs and the files the commands wrote are read (no import of ``mtcnn_train``), so the
check keeps working while the package's modules move.
"""
from __future__ import annotations

import argparse
import json
import platform
import re
import sys
import time
from pathlib import Path

PARTS = ("detect_speed", "train_throughput", "pipeline")

# device | mode | [our backend |] facenet img/s | ours img/s | speed-up | CPU speed-up | boxes matched
_DETECT_ROW = re.compile(r"^\|\s*(cpu|cuda\S*)\s*\|\s*(\w+)\s*\|(?:\s*([A-Za-z][\w-]*)\s*\|)?"
                         r"\s*([\d.]+)\s*\|\s*([\d.]+)\s*\|\s*([\d.]+)x\s*\|"
                         r"\s*([\d.]+)x\s*\|\s*(\d+)/(\d+)\s*/\s*(\d+)/(\d+)\s*\|")
_THROUGHPUT_ROW = re.compile(r"^(pnet|rnet|onet)\s+(\S+)\s+(\d+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s*$")
_STAGE_LINE = re.compile(r"\[\d+/\d+\]\s+(\w+) (samples|trained)\b.*\((\d+) s\)")


def parse_detect_speed(log: str) -> list[dict]:
    rows = []
    for line in log.splitlines():
        m = _DETECT_ROW.match(line.strip())
        if m:
            rows.append({"device": m[1], "mode": m[2], "backend": m[3] or "torch",
                         "facenet_img_s": float(m[4]), "ours_img_s": float(m[5]),
                         "speedup_wall": float(m[6]), "speedup_cpu": float(m[7]),
                         "facenet_boxes_matched": int(m[8]), "facenet_boxes": int(m[9]),
                         "ours_boxes_matched": int(m[10]), "ours_boxes": int(m[11])})
    return rows


def parse_throughput(log: str) -> list[dict]:
    rows = []
    for line in log.splitlines():
        m = _THROUGHPUT_ROW.match(line.strip())
        if m:
            rows.append({"net": m[1], "device": m[2], "batch": int(m[3]), "raw": float(m[4]), "ours": float(m[5]),
                         "dataloader": float(m[6]), "ours_over_raw": float(m[7]), "ours_over_dataloader": float(m[8])})
    return rows


def pipeline_results(out: Path, log: str) -> dict:
    """Per-stage seconds from the run folder's summary.json, else from the stage lines of the log."""
    summary = out / "pipeline-run" / "summary.json"
    if summary.is_file():
        data = json.loads(summary.read_text())
        return {"stage_seconds": data.get("seconds", {}), "samples": data.get("samples", {}),
                "evaluation": data.get("evaluation", {}), "source": str(summary)}
    seconds = {}
    for line in log.splitlines():
        m = _STAGE_LINE.search(line)
        if m:
            seconds[f"samples-{m[1]}" if m[2] == "samples" else m[1]] = float(m[3])
    return {"stage_seconds": seconds, "source": "log (the run did not finish)"} if seconds else {}


def read_status(out: Path, part: str) -> dict:
    path = out / "status" / part
    if not path.is_file():
        return {"status": "failed", "reason": "did not run (no status recorded)", "seconds": 0.0}
    status, text, seconds = (path.read_text().split("\n") + ["", "", "0"])[:3]
    entry: dict = {"status": status, "seconds": float(seconds or 0)}
    if text:
        entry["reason" if status == "skipped" else "error"] = text
    return entry


def collect(out: Path, parts: list[str]) -> dict:
    results = {}
    for part in parts:
        entry = read_status(out, part)
        log_path = out / f"{part}.log"
        log = log_path.read_text(errors="replace") if log_path.is_file() else ""
        if log:
            entry["log"] = log_path.name
        if part == "detect_speed":
            entry["results"] = parse_detect_speed(log)
        elif part == "train_throughput":
            entry["results"] = parse_throughput(log)
        elif part == "pipeline":
            entry["results"] = pipeline_results(out, log)
        if entry["status"] == "ok" and not entry["results"]:
            entry["status"], entry["error"] = "failed", "ran, but no figures found in its output"
        results[part] = entry
    return results


def markdown(summary: dict) -> str:
    lines = [f"# GPU check ({summary['mode']} mode, device {summary['device']})", "",
             f"{summary['date']}, {summary['machine']}; config {summary['config']}; data {summary['data']}", "",
             "| part | status | seconds | note |", "|---|---|---:|---|"]
    for part, entry in summary["parts"].items():
        note = entry.get("reason") or entry.get("error") or ""
        lines.append(f"| {part} | {entry['status']} | {entry['seconds']:.1f} | {note.replace('|', '/')} |")
    detect = summary["parts"].get("detect_speed", {}).get("results") or []
    if detect:
        lines += ["", "## Detection speed (ours vs facenet-pytorch)", "",
                  "| device | mode | ours | facenet-pytorch img/s | ours img/s | speed-up (wall) | speed-up (CPU) | boxes matched (theirs / ours) |",
                  "|---|---|---|---:|---:|---:|---:|---|"]
        lines += [f"| {r['device']} | {r['mode']} | {r['backend']} | {r['facenet_img_s']:.2f} | {r['ours_img_s']:.2f} | {r['speedup_wall']:.2f}x "
                  f"| {r['speedup_cpu']:.2f}x | {r['facenet_boxes_matched']}/{r['facenet_boxes']} / "
                  f"{r['ours_boxes_matched']}/{r['ours_boxes']} |" for r in detect]
    throughput = summary["parts"].get("train_throughput", {}).get("results") or []
    if throughput:
        lines += ["", "## Training throughput (samples/s)", "",
                  "| net | device | batch | raw | ours | dataloader | ours / raw | ours / dataloader |",
                  "|---|---|---:|---:|---:|---:|---:|---:|"]
        lines += [f"| {r['net']} | {r['device']} | {r['batch']} | {r['raw']:.0f} | {r['ours']:.0f} | {r['dataloader']:.0f} "
                  f"| {r['ours_over_raw']:.2f} | {r['ours_over_dataloader']:.2f} |" for r in throughput]
    pipe = summary["parts"].get("pipeline", {}).get("results") or {}
    if pipe.get("stage_seconds"):
        lines += ["", f"## Pipeline, seconds per stage (from {pipe['source']})", "", "| stage | seconds |", "|---|---:|"]
        lines += [f"| {k} | {v:.1f} |" for k, v in pipe["stage_seconds"].items()]
        lines.append(f"| total | {sum(pipe['stage_seconds'].values()):.1f} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--mode", default="full")
    parser.add_argument("--parts", default=",".join(PARTS))
    parser.add_argument("--config", default="")
    parser.add_argument("--data", default="")
    args = parser.parse_args()
    parts = [p for p in args.parts.split(",") if p]
    gpu = ""
    if args.device == "cuda":
        try:
            import torch
            gpu = ", GPU " + torch.cuda.get_device_name(0)
        except Exception:  # noqa: BLE001 -- the name is decoration only
            gpu = ", GPU (name unknown)"
    summary = {"mode": args.mode, "device": args.device, "date": time.strftime("%Y-%m-%d %H:%M:%S"),
               "machine": f"{platform.machine()}, {platform.node()}{gpu}", "config": args.config, "data": args.data,
               "parts": collect(args.out, parts)}
    failed = [p for p, e in summary["parts"].items() if e["status"] == "failed"]
    summary["failed"] = failed
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    text = markdown(summary)
    (args.out / "summary.md").write_text(text)
    print(text)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
