"""benchmarks/scale.py --tiny: the JSON has every fraction and step, with positive memory and time figures."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_scale_tiny(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "scale.py"), "--out", str(tmp_path), "--tiny",
                           "--fractions", "1/16,1"], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads((tmp_path / "scale.json").read_text())
    assert result["full_images"] == 32 and result["stages"] == ["pnet"] and result["tiny"] is True
    assert list(result["fractions"]) == ["1/16", "1"]
    assert [e["images"] for e in result["fractions"].values()] == [2, 32]
    for entry in result["fractions"].values():
        step = entry["steps"]["pnet"]
        for key in ("wall_s", "time_per_image_s", "stored_crops_per_s", "bytes_per_stored_crop",
                    "peak_rss_max_process_bytes", "peak_rss_tree_bytes"):
            assert isinstance(step[key], (int, float)) and step[key] > 0, key
        assert step["images"] > 0 and step["stored_crops"] > 0 and step["shard_bytes"] > 0
        assert step["num_processes"] >= 1 and all(p["peak_rss_bytes"] > 0 for p in step["processes"])
        assert any(p["cmd"].split()[1:4] == ["-m", "mtcnn_train", "gen-samples"] for p in step["processes"])
    ratios = result["ratios"]["pnet"]
    assert ratios["of"] == "1 / 1/16"
    assert ratios["peak_rss_max_process"] > 0 and ratios["time_per_image"] > 0
    assert isinstance(ratios["memory_ok"], bool) and isinstance(ratios["time_ok"], bool)
    assert "| 1 / 1/16" not in proc.stdout and "Ratios 1 / 1/16" in proc.stdout
