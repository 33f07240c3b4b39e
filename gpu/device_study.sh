#!/usr/bin/env bash
# The GPU machine's side of the converged study (issue #10, step 4): run from the repository root
# of the copy that travels there, with .gpu/ carried (gpu/bundle.sh made it).
#
#   bash gpu/device_study.sh study    [--deadline 540] [--parallel-runs 16] [--arch dptnet]
#                                     [--config configs/study.yaml] [--record records/study]
#                                     [--data DIR] [--device cuda]
#   bash gpu/device_study.sh teachers [--deadline 540] [--minutes 6] [--device cuda]
#                                     [--batch-size 16] [--segment-seconds 3] [--from-scratch]
#                                     [--archs "convtasnet dccrn"] [--lr 5e-4]
#
# study:    installs the carried wheels into a scratch site, rebuilds the demo corpus at the path
#           the record was made on (bit for bit, checked by SHA-256; gpu/corpus_sources.py), and
#           runs `dfkd experiment` there: many one-thread runs at once on the one GPU, the sweeps
#           scored (validation SI-SNR), the final runs trained and their test scores left to the
#           CPU (pesq has no cp312 wheel: --defer-test-scores).
# teachers: writes the teachers' mixing sources from the carried prompts (--varied: room
#           reverberation, wider level and SNR spread, more noise clips) and trains the `small`
#           teachers whose lead is short (Conv-TasNet, DCCRN-CL: issue #10) side by side
#           (pretrained/train_teachers.py), continuing from the committed ones (a further stage,
#           peak lr 5e-4; --from-scratch: from random weights), or resumes them.
#
# --deadline SECONDS counts from the start of this script: no cell starts and every run in
# flight saves last.pt at (deadline - 45 s), and the results are packed by the deadline. Give
# the device command a timeout_s at least 60 s above it. While it runs, $OUT/record.tar.gz is
# rewritten every minute (atomically), so a command killed at its limit still brings back what
# it finished. The same command resumes: from .gpu-work/ on the same (warm) machine, or (study)
# on a fresh one from .gpu/resume.tar.gz (`gpu/bundle.sh resume TAR` puts the last tar there).
# Back on the CPU: bash gpu/restore.sh TAR (README, "Running the study on a GPU").
set -euo pipefail
T0=$(date +%s)
ARGS="$*"
cd "$(dirname "$0")/.."
mode=${1:-}; shift || true
DEADLINE=540; PARALLEL=16; ARCH=""; DEVICE=cuda; CONFIG=configs/study.yaml; RECORD=records/study
DATA=""; MINUTES=6; BATCH=16; SEGMENT=3; TEACHER_ARCHS="convtasnet dccrn"; INIT=pretrained; LR=5e-4
# seconds between the runs' deadline and the script's (last steps, validation, packing), between
# two packs, and the least worth starting the grid for (small in the CPU test of this script)
STOP_MARGIN=${GPU_STOP_MARGIN:-45}
PACK_EVERY=${GPU_PACK_EVERY:-60}
MIN_BUDGET=${GPU_MIN_BUDGET:-20}
while [ $# -gt 0 ]; do
  case "$1" in
    --deadline) DEADLINE=$2; shift 2 ;;
    --parallel-runs) PARALLEL=$2; shift 2 ;;
    --arch) ARCH=$2; shift 2 ;;
    --device) DEVICE=$2; shift 2 ;;
    --config) CONFIG=$2; shift 2 ;;
    --record) RECORD=$2; shift 2 ;;
    --data) DATA=$2; shift 2 ;;
    --minutes) MINUTES=$2; shift 2 ;;
    --batch-size) BATCH=$2; shift 2 ;;
    --segment-seconds) SEGMENT=$2; shift 2 ;;
    --archs) TEACHER_ARCHS=$2; shift 2 ;;
    --lr) LR=$2; shift 2 ;;
    --from-scratch) INIT=""; LR=""; shift ;;
    *) echo "error: unknown option $1 (see the head of $0)" >&2; exit 2 ;;
  esac
done
case "$mode" in study|teachers) ;; *) sed -n '2,29p' "$0" >&2; exit 2 ;; esac

BUNDLE=${GPU_BUNDLE:-$PWD/.gpu}
WORK=${GPU_WORK:-$PWD/.gpu-work}
OUT=${OUT:-$WORK/files}      # the device tool's folder of files to bring back
PY=${PYTHON:-python3}
mkdir -p "$WORK" "$OUT"
LOG="$OUT/log.txt"
exec > >(tee -a "$LOG") 2>&1
left() { echo $(( DEADLINE - STOP_MARGIN - ($(date +%s) - T0) )); }
say() { echo "[device_study $(( $(date +%s) - T0 )) s] $*"; }

# 1. Python packages: the carried cp312 wheels, ahead of the machine's own
if compgen -G "$BUNDLE/whl/*.whl" > /dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target "$WORK/site" "$BUNDLE"/whl/*.whl
fi
export PYTHONPATH="$PWD/src:$WORK/site"
export PYTHONUNBUFFERED=1 OMP_WAIT_POLICY=PASSIVE
COMMIT=$(git rev-parse HEAD 2>/dev/null || echo unknown)
# the machine once (torch loads slowly): session.json of every pack carries it
NOTE=$("$PY" - "gpu/device_study.sh $ARGS" "$COMMIT" <<'EOF'
import json, platform, sys
from dfkd.experiment.runner import machine_description
print(f"python {platform.python_version()}, {machine_description()}", file=sys.stderr)
print(json.dumps({"command": sys.argv[1], "commit": sys.argv[2], "machine": machine_description()}))
EOF
)

pack() {  # one tar back (atomic); the teachers' weights go one tar per teacher (16 MiB a file)
  if [ "$mode" = study ]; then
    "$PY" gpu/results.py pack --out "$WORK/exp" --record "$WORK/record" --tar "$OUT/record.tar.gz" \
      --note "$NOTE"
  else
    for run in "$WORK"/teachers/*/; do
      [ -d "$run" ] || continue
      "$PY" gpu/results.py pack --teachers "${run%/}" --tar "$OUT/teacher-$(basename "$run").tar.gz" \
        --note "$NOTE"
    done
  fi
}
gpu_load() {  # a measurement for the next plan: how busy the GPU is with this many runs
  command -v nvidia-smi > /dev/null && nvidia-smi --format=csv,noheader \
    --query-gpu=utilization.gpu,memory.used | sed "s/^/[device_study $(( $(date +%s) - T0 )) s] GPU busy, memory: /" || true
}
packer() { while sleep "$PACK_EVERY"; do gpu_load; pack > /dev/null || true; done; }

# 2. What an earlier command left: this machine's work folder, else the carried tar
# (teachers resume on the same machine only: their weights and the teacher sources together are
# more than travels)
if [ "$mode" = study ] && [ -f "$BUNDLE/resume.tar.gz" ] && [ ! -d "$WORK/exp" ]; then
  mkdir -p "$WORK/record" && cp -rn "$RECORD"/. "$WORK/record"/
  "$PY" gpu/results.py restore --tar "$BUNDLE/resume.tar.gz" --record "$WORK/record" --out "$WORK/exp"
fi

if [ "$mode" = study ]; then
  # 3. The corpus, at the path the record (and so every run's name) was made on
  if [ -z "$DATA" ]; then
    DATA=$("$PY" -c 'import json, sys; print(json.load(open(sys.argv[1]))["data"])' "$RECORD/record.json")
  fi
  if [ -f "$DATA/dfkd_corpus.json" ] && \
     "$PY" gpu/corpus_sources.py digest "$DATA" --against "$BUNDLE/corpus/corpus_digest.json"; then
    say "corpus $DATA: already here"
  else
    "$PY" gpu/corpus_sources.py build --sources "$BUNDLE/corpus" --out "$DATA"
  fi
  [ -d "$WORK/record" ] || { mkdir -p "$WORK/record" && cp -r "$RECORD"/. "$WORK/record"/; }
  # 4. The grid until the deadline, packed every minute meanwhile
  packer & PACKER=$!
  trap 'kill $PACKER 2>/dev/null || true' EXIT
  budget=$(left)
  if [ "$budget" -gt "$MIN_BUDGET" ]; then
    say "dfkd experiment: $PARALLEL runs at once on $DEVICE, runs stop in $budget s"
    timeout --signal=INT $(( budget + STOP_MARGIN * 2 / 3 )) \
      "$PY" -m dfkd experiment --config "$CONFIG" --data "$DATA" --out "$WORK/exp" \
        --record "$WORK/record" --device "$DEVICE" --parallel-runs "$PARALLEL" \
        --deadline "$budget" --defer-test-scores --quiet ${ARCH:+--arch "$ARCH"} \
      || say "dfkd experiment ended with status $? (the packed tar holds what was finished)"
  else
    say "no time left for the grid ($budget s)"
  fi
  kill "$PACKER" 2>/dev/null || true; wait "$PACKER" 2>/dev/null || true
else
  # 3. The teachers' mixing sources from the carried prompts (deterministic: the same on rerun)
  if [ ! -f "$WORK/teacher_sources/.done" ]; then
    "$PY" gpu/corpus_sources.py music --unpack "$BUNDLE/moh" --out "$WORK/moh"
    "$PY" pretrained/make_teacher_sources.py --out "$WORK/teacher_sources" --sounds "$BUNDLE/sounds" \
      --moh "$WORK/moh" --varied
    touch "$WORK/teacher_sources/.done"
  fi
  packer & PACKER=$!
  trap 'kill $PACKER 2>/dev/null || true' EXIT
  budget=$(left)
  if compgen -G "$WORK/teachers/*/last.pt" > /dev/null; then
    say "resuming the teachers, stop in $budget s"
    pids=()
    for run in "$WORK"/teachers/*/; do
      "$PY" -m dfkd train --resume --out "${run%/}" --device "$DEVICE" --no-progress \
        --set "deadline=$(( $(date +%s) + budget ))" >> "${run%/}.log" 2>&1 & pids+=($!)
    done
    for pid in "${pids[@]}"; do wait "$pid" || true; done  # 75: stopped again at the deadline
  else
    arch_args=(); for a in $TEACHER_ARCHS; do arch_args+=(--arch "$a"); done
    "$PY" pretrained/train_teachers.py --sources "$WORK/teacher_sources" --out "$WORK/teachers" \
      --minutes "$MINUTES" --device "$DEVICE" --batch-size "$BATCH" --segment-seconds "$SEGMENT" \
      --deadline "$budget" "${arch_args[@]}" ${INIT:+--init "$INIT"} ${LR:+--lr "$LR"} \
      || say "train_teachers.py ended with status $?"
  fi
  kill "$PACKER" 2>/dev/null || true; wait "$PACKER" 2>/dev/null || true
fi
pack
say "done; back on the CPU: bash gpu/restore.sh <the tar>"
