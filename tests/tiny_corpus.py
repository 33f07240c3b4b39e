"""A tiny paired corpus for training tests: harmonic 'voices' in white noise, folder layout."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

SR = 16000


def make_tiny_corpus(root: Path, train: int = 8, valid: int = 3, seconds: float = 1.25,
                     seed: int = 0) -> Path:
    """``root/{train,valid}/{noisy,clean}/*.wav`` at 16 kHz; returns ``root``."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(SR * seconds)) / SR
    for split, count in (("train", train), ("valid", valid)):
        for i in range(count):
            f0 = rng.uniform(90, 220)
            tremolo = 0.6 + 0.4 * np.sin(2 * np.pi * rng.uniform(1, 4) * t)
            clean = 0.05 * tremolo * sum(
                np.sin(2 * np.pi * k * f0 * t + rng.uniform(0, 6)) / k for k in range(1, 10)
            )
            noisy = clean + 0.03 * rng.standard_normal(len(t))
            for kind, audio in (("clean", clean), ("noisy", noisy)):
                folder = root / split / kind
                folder.mkdir(parents=True, exist_ok=True)
                sf.write(folder / f"{split}{i:02d}.wav", audio.astype(np.float32), SR,
                         subtype="FLOAT")
    return root
