#!/usr/bin/env bash
# One-command GPU check: every figure the issue asks of a GPU, in one folder, with a summary.
#
#   bash benchmarks/gpu_check.sh OUT_DIR [--tiny] [--data DIR] [--config FILE] [options]
#
# Parts (each one's status -- ok / skipped: reason / failed: last error line -- goes into
# OUT_DIR/summary.md and OUT_DIR/summary.json; the full output of each into OUT_DIR/<part>.log):
#
#   detect_speed      benchmarks/detect_speed.py: our cascade vs facenet-pytorch's MTCNN, one image
#                     at a time and in batches (same weights and settings).  Skipped when
#                     facenet-pytorch is not importable; --facenet-wheels PATH (or $FACENET_WHEELS:
#                     a .whl file or a folder of them) installs it offline into OUT_DIR/facenet-site
#                     first (pip --no-index --no-deps; torch etc. must already be there), and
#                     --facenet-python PY (or $FACENET_PYTHON) runs this part under another
#                     interpreter that has it (e.g. a venv as in detect_speed.py's docstring).
#   train_throughput  benchmarks/train_throughput.py: training samples/s of each net, ours vs the
#                     raw forward-backward rate (and a per-file DataLoader).
#   pipeline          `python -m mtcnn_train pipeline --config FILE` (default: the shared-wider
#                     config) with the data root given by --data DIR (the folder holding
#                     wider_face/ and mtfl_80x80/; default $MTCNN_SHARED_DATA or ../shared/data),
#                     timed per stage (the run folder's summary.json); it stops after
#                     --pipeline-timeout seconds (default 330) and then records the stages finished.
#
# Device: CUDA when torch sees a GPU; without one the script runs the --tiny mode on the CPU.
# --tiny: every part at toy size in well under a minute on a CPU core: a synthetic set from
# `make-synthetic` (OUT_DIR/synthetic) stands in for WIDER and the landmark list, detection on 4
# images, sets of 600 random crops and a fraction of a second per throughput method, a pipeline
# with one epoch per net on 16 images.
#
# Other options: --python PY (default $PYTHON, else python), --set SECTION.KEY=VALUE (repeatable,
# passed on to the pipeline, e.g. --set train.pnet.epochs=5 to fit the time), --parts LIST
# (comma-separated subset of detect_speed,train_throughput,pipeline).
# Exit status: 0 when no part failed (skipped parts do not count), 1 when one did, 2 on bad usage.
set -u

usage() { sed -n '2,36p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="" TINY=0 DATA="" CONFIG="" PY="${PYTHON:-python}" PARTS="detect_speed,train_throughput,pipeline"
FN_WHEELS="${FACENET_WHEELS:-}" FN_PY="${FACENET_PYTHON:-}" PIPE_TIMEOUT=330
SETS=()
while [ $# -gt 0 ]; do
    case "$1" in
        --tiny) TINY=1 ;;
        --data) DATA="$2"; shift ;;
        --config) CONFIG="$2"; shift ;;
        --python) PY="$2"; shift ;;
        --facenet-wheels) FN_WHEELS="$2"; shift ;;
        --facenet-python) FN_PY="$2"; shift ;;
        --pipeline-timeout) PIPE_TIMEOUT="$2"; shift ;;
        --set) SETS+=(--set "$2"); shift ;;
        --parts) PARTS="$2"; shift ;;
        -h|--help) usage ;;
        -*) echo "gpu_check.sh: unknown option $1" >&2; usage ;;
        *) [ -z "$OUT" ] || { echo "gpu_check.sh: one OUT_DIR only" >&2; usage; }; OUT="$1" ;;
    esac
    shift || usage
done
[ -n "$OUT" ] || usage
mkdir -p "$OUT" && OUT="$(cd "$OUT" && pwd)"
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
cd "$REPO"

DEVICE="$("$PY" -c 'import torch; print("cuda" if torch.cuda.is_available() else "cpu")' 2>/dev/null)" || DEVICE=""
if [ -z "$DEVICE" ]; then
    echo "gpu_check.sh: $PY cannot import torch" >&2; exit 2
fi
if [ "$DEVICE" = cpu ] && [ "$TINY" = 0 ]; then
    echo "no CUDA device: running the tiny CPU mode"; TINY=1
fi
[ -n "$CONFIG" ] || CONFIG="$REPO/mtcnn_train/configs/shared-wider.yaml"
[ -n "$DATA" ] || DATA="${MTCNN_SHARED_DATA:-$REPO/../shared/data}"
STATUS="$OUT/status"; rm -rf "$STATUS"; mkdir -p "$STATUS"
echo "gpu_check: device $DEVICE, mode $([ $TINY = 1 ] && echo tiny || echo full), output in $OUT"

want() { case ",$PARTS," in *",$1,"*) return 0 ;; *) return 1 ;; esac; }
# record PART STATUS TEXT SECONDS: one status file per part, read by the summary writer.
record() { printf '%s\n%s\n%s\n' "$2" "$3" "$4" > "$STATUS/$1"; echo "  $1: $2${3:+ ($3)}"; }
last_error() { grep -v '^\s*$' "$1" | tr '\r' '\n' | grep -v '^\s*$' | tail -n 1 | cut -c1-300; }
# run PART TIMEOUT CMD...: run CMD with its output in PART.log; record ok, or failed with the last line.
run() {
    local part="$1" limit="$2"; shift 2
    local start rc; start=$(date +%s.%N)
    echo "[$part] $*" > "$OUT/$part.log"
    timeout "$limit" "$@" >> "$OUT/$part.log" 2>&1; rc=$?
    local secs; secs=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}')
    if [ $rc = 0 ]; then record "$part" ok "" "$secs"
    elif [ $rc = 124 ]; then record "$part" failed "timed out after $limit s; last line: $(last_error "$OUT/$part.log")" "$secs"
    else record "$part" failed "exit $rc: $(last_error "$OUT/$part.log")" "$secs"; fi
}

# Tiny mode: the synthetic set stands in for WIDER FACE and the landmark list.
if [ $TINY = 1 ]; then
    SYN="$OUT/synthetic"
    if [ ! -f "$SYN/summary.json" ]; then
        "$PY" -m mtcnn_train make-synthetic "$SYN" --images 16 > "$OUT/make_synthetic.log" 2>&1 \
            || { echo "make-synthetic failed: $(last_error "$OUT/make_synthetic.log")" >&2; exit 1; }
    fi
    WIDER="$SYN/wider"
else
    WIDER="$DATA/wider_face"
fi

# (a) detection speed, ours vs facenet-pytorch
if want detect_speed; then
    FPY="${FN_PY:-$PY}"
    if [ -n "$FN_WHEELS" ]; then
        if [ -d "$FN_WHEELS" ]; then WHEELS=("$FN_WHEELS"/*.whl); else WHEELS=("$FN_WHEELS"); fi
        "$FPY" -m pip install --quiet --no-index --no-deps --target "$OUT/facenet-site" "${WHEELS[@]}" \
            > "$OUT/facenet_install.log" 2>&1 || echo "  facenet-pytorch wheel install failed: $(last_error "$OUT/facenet_install.log")"
        export PYTHONPATH="$PYTHONPATH:$OUT/facenet-site"
    fi
    if ! IMPORT_ERR="$("$FPY" -c 'import facenet_pytorch' 2>&1)"; then
        record detect_speed skipped "facenet-pytorch not importable: $(echo "$IMPORT_ERR" | tail -n 1 | cut -c1-200)" 0
    elif [ ! -d "$WIDER" ]; then
        record detect_speed skipped "no WIDER FACE images at $WIDER (give --data DIR)" 0
    elif [ $TINY = 1 ]; then
        run detect_speed 300 "$FPY" benchmarks/detect_speed.py --wider "$WIDER" --images 4 --batch 2 --rounds 1 --devices cpu --threads 1
    else
        run detect_speed 150 "$FPY" benchmarks/detect_speed.py --wider "$WIDER" --images 32 --batch 16 --rounds 2 --devices cuda \
            --backends torch,torch-packed
    fi
fi

# (b) training throughput of each net vs the raw forward-backward rate
if want train_throughput; then
    if [ $TINY = 1 ]; then
        run train_throughput 300 "$PY" benchmarks/train_throughput.py --devices cpu --set-size 600 --seconds 0.2 --rounds 1 --workers 0 --threads 1
    else
        run train_throughput 150 "$PY" benchmarks/train_throughput.py --devices cuda --seconds 4 --rounds 2
    fi
fi

# (c) the whole pipeline, timed per stage
if want pipeline; then
    RUN_DIR="$OUT/pipeline-run"
    if [ $TINY = 1 ]; then
        PIPE_SETS=(--set "data.wider_root=$WIDER" --set "data.landmarks=$SYN/celeba/Anno/list_landmarks_celeba.txt"
                   --set data.landmarks_format=celeba --set data.landmarks_test= --set detection.min_face_size=64
                   --set "sampling.mining_thresholds=[0.5,0.1]" --set sampling.mining_base_crops=true
                   --set sampling.total_rnet=400 --set sampling.total_onet=400)
        for net in pnet rnet onet; do
            PIPE_SETS+=(--set "train.$net.epochs=1" --set "train.$net.threads=1" --set "train.$net.best_by=loss")
        done
        run pipeline 300 "$PY" -m mtcnn_train pipeline --out "$RUN_DIR" --config "$CONFIG" --quiet --no-eval "${PIPE_SETS[@]}" ${SETS[@]+"${SETS[@]}"}
    elif [ ! -d "$DATA/wider_face" ]; then
        record pipeline skipped "no data at $DATA (give --data DIR holding wider_face/ and mtfl_80x80/)" 0
    else
        PIPE_SETS=(--set "data.wider_root=$DATA/wider_face")
        [ -f "$DATA/mtfl_80x80/new_training.txt" ] && PIPE_SETS+=(--set "data.landmarks=$DATA/mtfl_80x80/new_training.txt")
        [ -f "$DATA/mtfl_80x80/new_testing.txt" ] && PIPE_SETS+=(--set "data.landmarks_test=$DATA/mtfl_80x80/new_testing.txt")
        run pipeline "$PIPE_TIMEOUT" "$PY" -m mtcnn_train pipeline --out "$RUN_DIR" --config "$CONFIG" --quiet "${PIPE_SETS[@]}" ${SETS[@]+"${SETS[@]}"}
    fi
fi

"$PY" "$REPO/benchmarks/gpu_check_summary.py" "$OUT" --device "$DEVICE" --mode "$([ $TINY = 1 ] && echo tiny || echo full)" \
    --parts "$PARTS" --config "$CONFIG" --data "$([ $TINY = 1 ] && echo "$SYN" || echo "$DATA")" || exit 1
