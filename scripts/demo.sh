#!/usr/bin/env bash
# Install into .venv and run the main job on the embedded synthetic data (no download).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/pip install -q --disable-pip-version-check torch==2.13.0
.venv/bin/pip install -q --disable-pip-version-check -e .
.venv/bin/mtcnn-train demo "$@"
