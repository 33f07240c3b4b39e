#!/usr/bin/env bash
# Resume one recorded study grid on a machine that may have lost everything but this repository
# (records/README.md): build the corpora at the paths the run names hold, freeze a copy of the code
# so that edits to the work tree cannot change a grid mid-run, and run `dfkd experiment` with the
# record, tcmalloc preloaded (README, "Cost of a KD step"). Finished cells come back from the
# record; only the missing ones train. Run it in the background from the repository root:
#
#   nohup bash records/resume_grid.sh configs/study_causal.yaml records/study_causal dptnet \
#       >> ~/dfkd-study/study_causal.log 2>&1 &
#
# Arguments: CONFIG RECORD ARCH [extra `dfkd experiment` arguments, e.g. --dry-run].
set -euo pipefail
[ $# -ge 3 ] || { echo "usage: $0 CONFIG RECORD ARCH [dfkd experiment args]" >&2; exit 2; }
config=$1 record=$2 arch=$3; shift 3
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || { echo "$0: no .venv here: run 'make venv system-packages' first" >&2; exit 1; }
[ -f "$config" ] || { echo "$0: $config: no such config" >&2; exit 1; }

# The run folders are named by the corpus's absolute path (records/*/record.json): keep it.
study=/root/dfkd-study
name=$(basename "$record")
mkdir -p "$study/data"
# Both builds are deterministic (checked: a rebuilt corpus gives every recorded noisy score to 1e-6
# dB) and do nothing when the corpus is already there with these settings.
.venv/bin/dfkd corpus demo --out "$study/data/demo_corpus"
.venv/bin/dfkd corpus heldout --out "$study/data/heldout_corpus"
[ -e data ] || ln -sfn "$study/data" data   # evaluation.heldout names data/heldout_corpus

# One frozen copy per content of src/: a second start with the same code reuses it, and a start
# with edited code never replaces the files a running grid still imports (its workers, its report).
digest=$(find src -name '*.py' -print0 | sort -z | xargs -0 sha256sum | sha256sum | cut -c1-12)
code="$study/code/$name-$digest"
if [ ! -d "$code" ]; then
  mkdir -p "$study/code" && rm -rf "$code.tmp" && cp -r src "$code.tmp" && mv "$code.tmp" "$code"
fi
tcmalloc=$(ls /usr/lib/*-linux-gnu/libtcmalloc_minimal.so.4 2>/dev/null | head -n 1 || true)
echo "$(date -u +%FT%TZ) resume $config --arch $arch (commit $(git rev-parse --short HEAD), code $code, record $record)"
LD_PRELOAD="$tcmalloc" OMP_WAIT_POLICY=PASSIVE PYTHONPATH="$code" \
    exec .venv/bin/python -m dfkd experiment --config "$config" --data "$study/data/demo_corpus" \
    --out "$study/$name" --record "$record" --arch "$arch" "$@"
