"""How often each adapter rule puts the DFKD crossover at bin 0 (the DC bin) on real teacher outputs.

usage: PYTHONPATH=src python benchmarks/crossover_rules.py [CORPUS] [--clips 8] [--seconds 4]

For each committed teacher (pretrained/<arch>_small.pt) and a few evenly spaced training clips of
the corpus, the teacher enhances each clip zero-padded to ``--seconds`` (the validation crops of
the trainer: short clips get a zero tail) and the script counts, per rule, the share of frames whose
crossover is bin 0 among the frames the training log counts (teacher frame energy above the
silence threshold), with and without the frames of the zero-padded tail (frames whose 512-sample
window lies entirely after the clip's end). Issue 11 asked both questions.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from dfkd.audio import load_mono
from dfkd.checkpoint import load_model
from dfkd.data.layouts import corpus_pairs
from dfkd.distill.adapter import FrequencyAdapter
from dfkd.distill.bands import SILENCE_DB, SILENCE_FLOOR
from dfkd.distill.spectra import HOP, N_FFT, power, stft_frames

RULES = ("cummax-slope", "cummax-slope:100", "cummax-slope:150", "cummax-slope-db",
         "cummax-slope-db:40", "cummax-slope-smooth", "cummax-slope-smooth:9", "energy-rolloff:0.9")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("corpus", nargs="?", default="data/demo_corpus")
    parser.add_argument("--clips", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=4.0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    pairs = corpus_pairs(args.corpus, "train")
    chosen = [pairs[int(i)] for i in np.linspace(0, len(pairs) - 1, args.clips)]
    samples = int(args.seconds * 16000)
    print(f"{len(chosen)} clips, padded to {args.seconds:g} s; share of counted frames at bin 0")
    print(f"{'teacher':12s} {'rule':24s} {'counted':>8s} {'tail':>5s} {'of them tail':>12s} {'bin 0':>7s} "
          f"{'bin 0 w/o tail':>14s} {'median Hz':>9s} {'p90 Hz':>7s}")
    for arch in ("convtasnet", "dccrn", "dptnet"):
        teacher = load_model(Path("pretrained") / f"{arch}_small.pt").eval()
        outputs, tails = [], []
        for pair in chosen:
            noisy = load_mono(pair.noisy, 16000)[:samples]
            padded = np.zeros(samples, dtype=np.float32)
            padded[: len(noisy)] = noisy
            with torch.no_grad():
                outputs.append(teacher(torch.from_numpy(padded)[None])[0])
            frames = samples // HOP + 1
            starts = torch.arange(frames) * HOP - N_FFT // 2  # centred frames
            tails.append(starts >= len(noisy))
        frames = stft_frames(torch.stack(outputs))
        frame_power = power(frames)
        energy = frame_power.sum(-1)
        threshold = (energy.amax(-1, keepdim=True) * 10 ** (SILENCE_DB / 10)).clamp_min(SILENCE_FLOOR)
        counted = energy > threshold
        tail = torch.stack(tails)
        for rule in RULES:
            bins = FrequencyAdapter(rule).crossover_bins(frame_power.sqrt(), freq_dim=-1)
            at_dc = bins == 0
            real = counted & ~tail
            hz = bins[counted].float() * 16000 / N_FFT
            print(f"{arch:12s} {rule:24s} {int(counted.sum()):8d} {int(tail.sum()):5d} "
                  f"{int((counted & tail).sum()):12d} {float(at_dc[counted].float().mean()):7.1%} "
                  f"{float(at_dc[real].float().mean()):14.1%} {float(hz.median()):9.0f} "
                  f"{float(hz.quantile(0.9)):7.0f}")


if __name__ == "__main__":
    main()
