"""Seam error of chunked enhancement: chunked overlap-add against whole-file processing.

Enhances one long synthetic noisy recording (speech-like utterances in pink noise) in one piece
and in chunks, and prints how far below the whole-file output the difference lies (dB) and the
largest absolute difference relative to the output's peak, for several chunk/overlap settings.

    .venv/bin/python benchmarks/enhance_seams.py [CKPT ...] [--presets small] [--seconds 30]

Without checkpoints it builds the three architectures at ``--presets`` (untrained weights: the
numbers describe chunking, not enhancement quality; pass trained checkpoints for those).
"""

from __future__ import annotations

import argparse
import sys

import numpy as np


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoints", nargs="*")
    parser.add_argument("--arch", default="convtasnet,dptnet,dccrn")
    parser.add_argument("--presets", default="small")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--settings", default="4:0.5,2:0.25,8:1",
                        help="chunk:overlap pairs in seconds")
    args = parser.parse_args()

    import torch

    from dfkd.checkpoint import load_model
    from dfkd.deploy.backends import TorchBackend
    from dfkd.deploy.streaming import Chunking, enhance_array, enhance_chunked
    from dfkd.deploy.export import synthetic_pairs
    from dfkd.models import build

    torch.set_num_threads(1)
    if args.checkpoints:
        models = [(path, load_model(path)) for path in args.checkpoints]
    else:
        torch.manual_seed(0)
        models = [(f"{a}/{p}", build(a, p)) for a in args.arch.split(",") for p in args.presets.split(",")]
    noisy = np.concatenate([n for n, _ in synthetic_pairs(count=max(1, int(args.seconds // 5)),
                                                          seconds=5.0)])[None]
    settings = [tuple(float(v) for v in s.split(":")) for s in args.settings.split(",")]
    print(f"{noisy.shape[1] / 16000:.0f} s of synthetic speech in pink noise at 5 dB, 16 kHz")
    print(f"{'model':22s} {'chunk s':>7s} {'overlap s':>9s} {'chunks':>6s} {'error dB':>9s} {'max/peak':>9s}")
    for label, model in models:
        backend = TorchBackend(model)
        whole = enhance_array(backend, noisy, 16000)
        for chunk, overlap in settings:
            chunking = Chunking(chunk, overlap)
            chunked = enhance_chunked(backend, noisy, 16000, chunking)
            diff = chunked - whole
            error_db = 10 * np.log10(np.sum(whole**2) / max(np.sum(diff**2), 1e-30))
            print(f"{label:22s} {chunk:7g} {overlap:9g} {chunking.count(noisy.shape[1], 16000, 16000, backend.grid):6d} "
                  f"{-error_db:9.1f} {np.abs(diff).max() / np.abs(whole).max():9.1e}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
