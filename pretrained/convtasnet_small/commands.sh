#!/bin/sh
# Retrain the convtasnet demo teacher from scratch (seed in the configs).
# Sources: python pretrained/make_teacher_sources.py --out data/teacher_sources
set -e
dfkd train --config pretrained/convtasnet_small/stage1.yaml \
    --data data/teacher_sources \
    --out runs/teachers/stage1/convtasnet \
    --set stop_after=1200
dfkd train --config pretrained/convtasnet_small/stage2.yaml \
    --data data/teacher_sources \
    --out runs/teachers/stage2/convtasnet \
    --init runs/teachers/stage1/convtasnet/last.pt
# stage 3 on:
#   python pretrained/make_teacher_sources.py --out data/teacher_sources_varied --varied
dfkd train --config pretrained/convtasnet_small/stage3.yaml \
    --data data/teacher_sources_varied \
    --out runs/teachers/stage3/convtasnet \
    --init runs/teachers/stage2/convtasnet/best.pt
# the teacher: runs/teachers/stage3/convtasnet/best.pt (committed as pretrained/convtasnet_small.pt)
