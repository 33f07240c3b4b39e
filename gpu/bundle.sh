#!/usr/bin/env bash
# Pack what a bare GPU machine (no network, its own Python 3.12 + CUDA torch) needs for
# gpu/device_study.sh, into the git-ignored .gpu/ (carried with `carry: [".gpu"]`):
#
#   bash gpu/bundle.sh study [CORPUS]   the demo corpus's sources + digests (gpu/corpus_sources.py;
#                                       CORPUS defaults to the path records/study was made on)
#   bash gpu/bundle.sh teachers         the speech and music the demo teachers train on
#                                       (pretrained/make_teacher_sources.py): en, es, it prompts
#   bash gpu/bundle.sh resume TAR       add the record.tar.gz of a previous GPU command, so that a
#                                       fresh machine continues where that one stopped
#
# Each mode also downloads the cp312 wheels of the packages the GPU machine may lack. Both data
# modes together do not fit the 64 MiB that travels (repository included), so a session picks
# one; the script prints the size of everything that travels and fails over the limit.
# Python: $PYTHON, else .venv/bin/python, else python3 (it needs dfkd's dependencies).
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-}
PY=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
LIMIT=$((64 * 1024 * 1024))
mkdir -p .gpu/whl

case "$mode" in
  study)
    corpus=${2:-$("$PY" -c 'import json; print(json.load(open("records/study/record.json"))["data"])')}
    [ -f "$corpus/dfkd_corpus.json" ] || { echo "error: $corpus: no demo corpus there (dfkd corpus demo --out $corpus)" >&2; exit 1; }
    rm -rf .gpu/sounds .gpu/moh  # the other mode's data: one at a time fits
    "$PY" gpu/corpus_sources.py pack --corpus "$corpus" --out .gpu/corpus
    ;;
  teachers)
    rm -rf .gpu/corpus
    mkdir -p .gpu/sounds
    for lang in en es it; do  # the demo's training speakers (speech.ASTERISK_SPLITS["train"])
      rm -rf ".gpu/sounds/$lang" && cp -rL "/usr/share/asterisk/sounds/$lang" .gpu/sounds/
    done
    "$PY" gpu/corpus_sources.py music --splits train --out .gpu/moh  # FLAC, lossless
    ;;
  resume)
    [ -f "${2:-}" ] || { echo "error: give the record.tar.gz that a GPU command brought back" >&2; exit 1; }
    cp "$2" .gpu/resume.tar.gz
    ;;
  *)
    sed -n '2,14p' "$0" >&2; exit 2 ;;
esac

# The packages of dfkd that a bare machine may lack, at the versions tested here (pesq has no
# cp312 wheel: test scores are left to the CPU, device_study.sh passes --defer-test-scores).
pins=$("$PY" - <<'EOF'
from importlib.metadata import version
print(" ".join(f"{n}=={version(n)}" for n in ("soundfile", "cffi", "pycparser", "g722", "pyyaml", "tqdm")))
EOF
)
rm -f .gpu/whl/*.whl
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  --platform manylinux_2_5_x86_64 --platform manylinux1_x86_64 -d .gpu/whl $pins

bundle=$(du -sb .gpu | cut -f1)
tracked=$(git ls-files -z | xargs -0 du -cb 2>/dev/null | tail -1 | cut -f1)
others=$(git ls-files -z --others --exclude-standard | xargs -0 -r du -cb 2>/dev/null | tail -1 | cut -f1)
total=$((bundle + tracked + ${others:-0}))
awk -v b="$bundle" -v t="$total" -v l="$LIMIT" 'BEGIN { printf ".gpu/: %.1f MB; travelling with the working tree: %.1f MB of %.1f MB (64 MiB)\n", b / 1e6, t / 1e6, l / 1e6 }'
[ "$total" -le "$LIMIT" ] || { echo "error: over the 64 MiB that travels" >&2; exit 1; }
