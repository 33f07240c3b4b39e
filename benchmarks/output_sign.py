"""The sign of each model's output: its correlation with the clean target, clip by clip.

SI-SNR, the task loss of every study student, is blind to the sign of the output (the projection
onto the target may have a negative gain), so a student keeps the sign its initial filters give
it. A sign-sensitive KD term (``output``'s L1, DFKD's cosines) with the teacher flipped to agree
with the clean target then pulls an inverted student against a sign its task does not care about
(README, "The converged study"; ``polarity_to: student`` is the remedy). This prints, per model,
the mean normalised correlation ``<s, y> / (|s| |y|)`` over the first clips of a split and how
many clips are positive:

    python benchmarks/output_sign.py --data ~/dfkd-study/data/demo_corpus \\
        ~/dfkd-study/study/runs/convtasnet/none/*/best.pt [--clips 12] [--split train]
"""

from __future__ import annotations

import argparse

import torch

from dfkd import SAMPLE_RATE
from dfkd.audio import load_mono
from dfkd.checkpoint import load_model
from dfkd.data.layouts import corpus_pairs


def correlations(model: torch.nn.Module, pairs) -> list[float]:
    values = []
    with torch.no_grad():
        for pair in pairs:
            noisy = torch.from_numpy(load_mono(pair.noisy, SAMPLE_RATE))
            clean = torch.from_numpy(load_mono(pair.clean, SAMPLE_RATE))
            out = model(noisy[None])[0][: clean.numel()]
            values.append(float((out * clean[: out.numel()]).sum() / (out.norm() * clean.norm() + 1e-12)))
    return values


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="+", help="checkpoints or run folders")
    parser.add_argument("--data", required=True, help="corpus folder")
    parser.add_argument("--split", default="train", choices=("train", "valid", "test"))
    parser.add_argument("--clips", type=int, default=12)
    args = parser.parse_args()
    torch.set_num_threads(1)
    pairs = corpus_pairs(args.data, args.split)[: args.clips]
    print(f"{len(pairs)} {args.split} clips of {args.data}; correlation of the output with the clean target")
    for path in args.models:
        values = correlations(load_model(path).eval(), pairs)
        print(f"{sum(values) / len(values):+.2f} mean, {sum(v > 0 for v in values)}/{len(values)} "
              f"positive  {path}")


if __name__ == "__main__":
    main()
