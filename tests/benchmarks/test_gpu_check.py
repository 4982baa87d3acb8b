"""benchmarks/gpu_check.sh --tiny on the CPU: every part listed with a status, figures where ok."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_gpu_check_tiny(tmp_path):
    out = tmp_path / "check"
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "PYTHON": sys.executable,
           "FACENET_WHEELS": "", "FACENET_PYTHON": ""}
    proc = subprocess.run(["bash", str(REPO / "benchmarks" / "gpu_check.sh"), str(out), "--tiny"],
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    for name in ("summary.json", "summary.md", "train_throughput.log", "pipeline.log", "pipeline-run/summary.json"):
        assert (out / name).is_file(), name
    summary = json.loads((out / "summary.json").read_text())
    assert summary["mode"] == "tiny" and summary["device"] == "cpu" and summary["failed"] == []
    parts = summary["parts"]
    assert set(parts) == {"detect_speed", "train_throughput", "pipeline"}
    for entry in parts.values():
        assert entry["status"] in ("ok", "skipped")
        assert entry["status"] == "ok" or entry["reason"]

    detect = parts["detect_speed"]
    try:
        import facenet_pytorch  # noqa: F401
    except ImportError:
        assert detect["status"] == "skipped"
        assert detect["reason"].startswith("facenet-pytorch not importable")
    else:
        assert detect["status"] == "ok"
        assert {r["mode"] for r in detect["results"]} == {"single", "batched"}
        assert all(r["ours_img_s"] > 0 and r["facenet_img_s"] > 0 for r in detect["results"])

    throughput = parts["train_throughput"]
    assert throughput["status"] == "ok"
    assert [(r["net"], r["device"]) for r in throughput["results"]] == [("pnet", "cpu"), ("rnet", "cpu"), ("onet", "cpu")]
    for row in throughput["results"]:
        assert row["raw"] > 0 and row["ours"] > 0 and row["ours_over_raw"] > 0

    pipeline = parts["pipeline"]
    assert pipeline["status"] == "ok"
    seconds = pipeline["results"]["stage_seconds"]
    assert set(seconds) == {"samples-pnet", "pnet", "samples-rnet", "rnet", "samples-onet", "onet"}
    assert all(v > 0 for v in seconds.values())
    assert set(pipeline["results"]["samples"]) == {"pnet", "rnet", "onet"}

    text = (out / "summary.md").read_text()
    assert "| detect_speed | skipped |" in text or "| detect_speed | ok |" in text
    assert "| pipeline | ok |" in text and "| total |" in text


def test_gpu_check_reports_failed_part(tmp_path):
    """A part that fails is listed as failed with its last error line, and the script exits non-zero."""
    out = tmp_path / "check"
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "PYTHON": sys.executable}
    proc = subprocess.run(["bash", str(REPO / "benchmarks" / "gpu_check.sh"), str(out), "--tiny", "--parts", "pipeline",
                           "--config", str(tmp_path / "missing.yaml")],
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert list(summary["parts"]) == ["pipeline"] and summary["failed"] == ["pipeline"]
    assert summary["parts"]["pipeline"]["error"].startswith("exit ")


def test_summary_reads_detect_speed_rows_with_and_without_a_backend_column():
    """detect_speed.py prints an "ours" column (torch, torch-packed, onnx...); older logs had none."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        from gpu_check_summary import parse_detect_speed
    finally:
        sys.path.remove(str(REPO / "benchmarks"))
    log = "\n".join([
        "| device | mode | ours | facenet-pytorch img/s | ours img/s | speed-up (wall) | speed-up (CPU time) | boxes matched (theirs / ours) |",
        "|---|---|---|---|---|---|---|---|",
        "| cuda | single | torch | 20.10 | 61.00 | 3.03x | 2.90x | 134/134 / 134/134 |",
        "| cuda | batched | torch-packed | 25.00 | 90.50 | 3.62x | 3.10x | 120/121 / 121/122 |",
        "| cpu | single | 2.80 | 6.38 | 2.28x | 2.27x | 134/134 / 134/134 |",
    ])
    rows = parse_detect_speed(log)
    assert [(r["device"], r["mode"], r["backend"]) for r in rows] == [
        ("cuda", "single", "torch"), ("cuda", "batched", "torch-packed"), ("cpu", "single", "torch")]
    assert rows[1]["ours_img_s"] == 90.5 and rows[1]["speedup_wall"] == 3.62
    assert (rows[1]["facenet_boxes_matched"], rows[1]["facenet_boxes"], rows[1]["ours_boxes_matched"],
            rows[1]["ours_boxes"]) == (120, 121, 121, 122)
    assert rows[2]["speedup_cpu"] == 2.27
