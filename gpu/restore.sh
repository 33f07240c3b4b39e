#!/usr/bin/env bash
# Take a GPU session's results in on the CPU (gpu/results.py restore), from the repository root:
#
#   bash gpu/restore.sh TAR [--record records/study] [--out ~/dfkd-study/study]
#
# TAR: the record.tar.gz (or teacher-<arch>.tar.gz) that the device command left in $OUT. The
# recorded cells join the record; the trained final runs and the runs stopped at the deadline,
# with their weights, join the experiment folder. Stop a grid running in that folder first (it
# may be training the same cells). Then resume the grid as usual; it scores the GPU's final runs
# on the test and held-out splits and trains nothing the GPU finished:
#
#   dfkd experiment --config configs/study.yaml --data /root/dfkd-study/data/demo_corpus \
#       --out ~/dfkd-study/study --record records/study [--arch dptnet]
set -euo pipefail
cd "$(dirname "$0")/.."
tar=${1:?usage: bash gpu/restore.sh TAR [--record DIR] [--out DIR]}
shift
RECORD=records/study
OUT=~/dfkd-study/study
while [ $# -gt 0 ]; do
  case "$1" in
    --record) RECORD=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    *) echo "error: unknown option $1" >&2; exit 2 ;;
  esac
done
PY=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" "$PY" gpu/results.py restore --tar "$tar" \
  --record "$RECORD" --out "$OUT"
