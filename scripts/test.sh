#!/usr/bin/env bash
# Install into .venv and run the test suite.  Used by the README and by .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/pip install -q --disable-pip-version-check torch==2.13.0
.venv/bin/pip install -q --disable-pip-version-check -c tests/constraints.txt -e ".[dev,onnx]"
set +e
# One worker per core (pytest-xdist), a test file per worker at a time: the suite is mostly
# single-threaded subprocess work, so two cores halve much of it (measured: 314 s instead of
# about 450 s on the 2-core VM).  Module-scoped fixtures stay shared within their file.
.venv/bin/python -m pytest -q -p no:cacheprovider -n auto --dist loadfile "$@"
status=$?
set -e
# pytest exits 5 when it collected no test: that must fail, not pass silently.
if [ "$status" -eq 5 ]; then
  echo "error: pytest collected no tests" >&2
  exit 1
fi
exit "$status"
