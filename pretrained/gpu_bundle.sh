#!/usr/bin/env bash
# Pack what a bare GPU machine (no network, its own Python 3.12 + torch) needs to train the demo
# teachers: the training speakers' G.722 prompts, the training music, and cp312 wheels of the
# packages it lacks. Writes .gpu/ (git-ignored via .git/info/exclude; ~55 MB, under a 64 MiB carry).
#
# Then, on the GPU machine, from the repository root (carry .gpu):
#   python3 -m pip install -q --no-index --no-deps --target /tmp/site .gpu/whl/*.whl
#   export PYTHONPATH=/tmp/site:$PWD/src
#   python3 pretrained/make_teacher_sources.py --out /tmp/ts --sounds .gpu/sounds --moh .gpu/moh
#   python3 pretrained/train_teachers.py --sources /tmp/ts --out /tmp/teachers --minutes 6 \
#       --device cuda --batch-size 16 --segment-seconds 3
# (pesq has no cp312 wheel: train_teachers.py sets data.pesq_clips=0, and PESQ is imported lazily.)
set -euo pipefail
cd "$(dirname "$0")/.."
grep -qx "/.gpu/" .git/info/exclude 2>/dev/null || echo "/.gpu/" >> .git/info/exclude
mkdir -p .gpu/sounds .gpu/moh .gpu/whl
for lang in en es it; do  # the demo corpus's training speakers (corpus_speech.ASTERISK_SPLITS)
  cp -rL "/usr/share/asterisk/sounds/$lang" .gpu/sounds/
done
cp /usr/share/asterisk/moh/macroform-*.wav .gpu/moh/  # corpus_noise.MOH_SPLITS["train"]
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  --platform manylinux_2_5_x86_64 --platform manylinux1_x86_64 -d .gpu/whl soundfile cffi pycparser g722
du -sh .gpu
