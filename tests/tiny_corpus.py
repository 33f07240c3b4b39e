"""Test material shared by several test files: a tiny paired corpus (harmonic 'voices' in white
noise, folder layout), synthetic speech at a given SNR, and a digest of a folder's files."""

from __future__ import annotations

import hashlib
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


def make_tiny_grid_corpus(root: Path) -> Path:
    """The smallest corpus a grid runs on: 2 train, 1 valid and 1 test pair of 0.5 s; ``root``."""
    make_tiny_corpus(root, train=2, valid=1, seconds=0.5)
    make_tiny_corpus(root / "test_split", train=1, valid=0, seconds=0.5)
    (root / "test_split" / "train").rename(root / "test")
    (root / "test_split").rmdir()
    return root


def speech_in_noise(snr_db: float, seconds: float = 4.0) -> tuple[np.ndarray, np.ndarray]:
    """``(clean, noisy)``: a synthetic utterance (``dfkd.data.demo.speech``) in white noise at
    ``snr_db``, float32, seeded."""
    from dfkd.data.demo.speech import synthetic_utterance

    rng = np.random.default_rng(0)
    clean = synthetic_utterance(rng, 140.0, 1.0, seconds) * 0.6
    noise = rng.standard_normal(clean.size).astype(np.float32)
    noise *= np.sqrt(np.mean(clean**2) / np.mean(noise**2)) * 10 ** (-snr_db / 20)
    return clean, (clean + noise).astype(np.float32)


def tree_digest(folder: Path) -> dict[str, str]:
    """Relative path -> SHA-256 of every file under ``folder`` (to compare two builds)."""
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}
