#!/bin/sh
# Retrain the dptnet demo teacher from scratch (seed in the configs).
# Sources: python pretrained/make_teacher_sources.py --out data/teacher_sources
set -e
dfkd train --config pretrained/dptnet_small/stage1.yaml \
    --data data/teacher_sources \
    --out runs/teachers/stage1/dptnet \
    --set stop_after=1800
dfkd train --config pretrained/dptnet_small/stage2.yaml \
    --data data/teacher_sources \
    --out runs/teachers/stage2/dptnet \
    --init runs/teachers/stage1/dptnet/last.pt
# the teacher: runs/teachers/stage2/dptnet/best.pt (committed as pretrained/dptnet_small.pt)
