#!/bin/sh
# Retrain the dccrn demo teacher from scratch (seed in the configs).
# Sources: python pretrained/make_teacher_sources.py --out data/teacher_sources
set -e
dfkd train --config pretrained/dccrn_small/stage1.yaml \
    --data data/teacher_sources \
    --out runs/teachers/stage1/dccrn \
    --set stop_after=2000
dfkd train --config pretrained/dccrn_small/stage2.yaml \
    --data data/teacher_sources \
    --out runs/teachers/stage2/dccrn \
    --init runs/teachers/stage1/dccrn/last.pt
# stage 3 on:
#   python pretrained/make_teacher_sources.py --out data/teacher_sources_varied --varied
dfkd train --config pretrained/dccrn_small/stage3.yaml \
    --data data/teacher_sources_varied \
    --out runs/teachers/stage3/dccrn \
    --init runs/teachers/stage2/dccrn/best.pt
# the teacher: runs/teachers/stage3/dccrn/best.pt (committed as pretrained/dccrn_small.pt)
