"""Noise and room reverberation for the demo corpus, all made offline with numpy/scipy.

Noise types (one per utterance, chosen uniformly):

``white`` / ``pink`` / ``brown``
    Gaussian noise with a flat, 1/f or 1/f^2 power spectrum.
``speech_shaped``
    White noise shaped by the long-term average spectrum of the split's own clean speech.
``babble``
    3-6 other utterances of the *same split* summed at equal level (training babble never contains
    validation or test talkers).
``hum``
    Mains hum: 50 or 60 Hz (±0.5 %) with 10 harmonics of random decaying amplitudes, plus a faint
    noise floor.
``clicks``
    Random clicks (1-5 ms decaying bursts, 1-8 per second) over a faint noise floor.
``music``
    An excerpt of the split's music tracks (``asterisk-moh-opsound-wav``, CC-BY-SA-3.0, 8 kHz files
    upsampled, so the music has no energy above 4 kHz), or synthetic notes when those are missing.

Reverberation (optional): a synthetic room impulse response, not a room simulation: a direct path,
6-12 early reflections within 30 ms, and an exponentially decaying Gaussian tail with RT60 drawn in
0.2-0.8 s at a direct-to-reverberant ratio of 0-10 dB. Built in rather than pyroomacoustics so that
the corpus has the same bytes on every machine and needs no compiled extra.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Collection, Sequence

import numpy as np
from scipy.signal import fftconvolve, welch

from ...audio import load_mono
from ... import SAMPLE_RATE

MOH_DIR = Path("/usr/share/asterisk/moh")
NOISE_TYPES: tuple[str, ...] = ("white", "pink", "brown", "speech_shaped", "babble", "hum",
                                "clicks", "music")
#: Music tracks per split (disjoint), by file stem.
MOH_SPLITS: dict[str, tuple[str, ...]] = {
    "train": ("macroform-cold_day", "macroform-robot_dity", "macroform-the_simplicity"),
    "valid": ("manolo_camp-morning_coffee",),
    "test": ("reno_project-system",),
}


def _shaped(rng: np.random.Generator, n: int, gain: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """Gaussian noise whose amplitude spectrum is multiplied by ``gain(frequency in Hz)``."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1 / SAMPLE_RATE)
    out = np.fft.irfft(spectrum * gain(freqs), n)
    return (out / (np.std(out) + 1e-12)).astype(np.float32)


def colored(rng: np.random.Generator, n: int, exponent: float) -> np.ndarray:
    """Noise with power spectrum 1/f^exponent (0 white, 1 pink, 2 brown), unit variance."""
    # Below 20 Hz the spectrum is held flat: no DC drift, no sub-audio rumble dominating brown noise.
    return _shaped(rng, n, lambda f: np.maximum(f, 20.0) ** (-exponent / 2))


def long_term_spectrum(utterances: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """``(frequencies, amplitude)`` of the average speech spectrum (Welch, 512-point frames)."""
    joined = np.concatenate([u for u in utterances if len(u) >= 512])
    freqs, power = welch(joined, fs=SAMPLE_RATE, nperseg=512)
    return freqs, np.sqrt(power)


def speech_shaped(rng: np.random.Generator, n: int, ltas: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    freqs, amplitude = ltas
    return _shaped(rng, n, lambda f: np.interp(f, freqs, amplitude))


def _excerpt(rng: np.random.Generator, audio: np.ndarray, n: int) -> np.ndarray:
    if len(audio) <= n:
        return np.resize(audio, n)
    start = int(rng.integers(0, len(audio) - n + 1))
    return audio[start:start + n]


def babble(rng: np.random.Generator, n: int, pool: Sequence[np.ndarray],
           exclude: Collection[int]) -> np.ndarray:
    """3-6 utterances of ``pool`` (none of the indices in ``exclude``), each at unit RMS, summed."""
    choices = [k for k in range(len(pool)) if k not in exclude] or list(range(len(pool)))
    talkers = rng.choice(choices, size=min(int(rng.integers(3, 7)), len(choices)), replace=False)
    out = np.zeros(n, dtype=np.float64)
    for k in talkers:
        voice = _excerpt(rng, np.asarray(pool[int(k)], dtype=np.float64), n)
        out += np.roll(voice, int(rng.integers(0, n))) / (np.std(voice) + 1e-9)
    return out.astype(np.float32)


def hum(rng: np.random.Generator, n: int) -> np.ndarray:
    t = np.arange(n) / SAMPLE_RATE
    f0 = rng.choice([50.0, 60.0]) * rng.uniform(0.995, 1.005)
    decay = rng.uniform(0.5, 1.5)
    out = sum(k**-decay * np.sin(2 * np.pi * k * f0 * t + rng.uniform(0, 2 * np.pi))
              for k in range(1, 11))
    out = out / np.std(out)
    return (out + 0.03 * rng.standard_normal(n)).astype(np.float32)


def clicks(rng: np.random.Generator, n: int) -> np.ndarray:
    out = 0.02 * rng.standard_normal(n)
    count = max(1, int(rng.uniform(1, 8) * n / SAMPLE_RATE))
    for start in rng.integers(0, n, size=count):
        length = int(rng.uniform(0.001, 0.005) * SAMPLE_RATE)
        burst = rng.standard_normal(length) * np.exp(-np.arange(length) / (length / 4))
        stop = min(start + length, n)
        out[start:stop] += rng.uniform(0.3, 1.0) * burst[: stop - start]
    return out.astype(np.float32)


def synthetic_music(rng: np.random.Generator, seconds: float) -> np.ndarray:
    """Notes of harmonic tones (random pentatonic melody over a held chord)."""
    n = int(seconds * SAMPLE_RATE)
    out = np.zeros(n)
    scale = 220.0 * 2 ** (np.array([0, 2, 4, 7, 9, 12, 14, 16]) / 12)
    position = 0
    while position < n:
        length = min(int(rng.uniform(0.15, 0.6) * SAMPLE_RATE), n - position)
        t = np.arange(length) / SAMPLE_RATE
        for freq in (rng.choice(scale), scale[0] / 2):
            tone = sum(np.sin(2 * np.pi * k * freq * t) / k for k in range(1, 6))
            out[position:position + length] += tone * np.exp(-3 * t)
        position += length
    return (out / (np.std(out) + 1e-9)).astype(np.float32)


def music_tracks(split: str, synthetic: bool, rng: np.random.Generator) -> tuple[list[np.ndarray], list[str]]:
    """The split's music (mono, 16 kHz) and where it came from."""
    if not synthetic:
        paths = [MOH_DIR / f"{stem}.wav" for stem in MOH_SPLITS[split]]
        if all(p.is_file() for p in paths):
            return [load_mono(p, SAMPLE_RATE, cache=False) for p in paths], [p.name for p in paths]
    return [synthetic_music(rng, 60.0)], ["synthetic notes"]


def make_noise(kind: str, rng: np.random.Generator, n: int, *, pool: Sequence[np.ndarray],
               exclude: Collection[int], ltas: tuple[np.ndarray, np.ndarray], music: Sequence[np.ndarray]
               ) -> np.ndarray:
    """``n`` samples of noise of type ``kind`` (see the module docstring)."""
    if kind in ("white", "pink", "brown"):
        return colored(rng, n, {"white": 0.0, "pink": 1.0, "brown": 2.0}[kind])
    if kind == "speech_shaped":
        return speech_shaped(rng, n, ltas)
    if kind == "babble":
        return babble(rng, n, pool, exclude)
    if kind == "hum":
        return hum(rng, n)
    if kind == "clicks":
        return clicks(rng, n)
    if kind == "music":
        return _excerpt(rng, music[int(rng.integers(len(music)))], n).astype(np.float32)
    raise ValueError(f"unknown noise type {kind!r}")


def synthetic_rir(rng: np.random.Generator) -> tuple[np.ndarray, float]:
    """A synthetic room impulse response and its RT60 in seconds (see the module docstring)."""
    rt60 = float(rng.uniform(0.2, 0.8))
    n = int(min(1.2 * rt60, 1.0) * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE
    rir = np.zeros(n)
    rir[0] = 1.0
    for _ in range(int(rng.integers(6, 13))):
        delay = int(rng.uniform(0.002, 0.03) * SAMPLE_RATE)
        rir[delay] += rng.choice([-1, 1]) * rng.uniform(0.1, 0.5) * np.exp(-6.9 * t[delay] / rt60)
    onset = int(0.005 * SAMPLE_RATE)
    tail = rng.standard_normal(n) * np.exp(-6.9 * t / rt60)  # -60 dB at rt60
    tail[:onset] = 0.0
    drr_db = rng.uniform(0.0, 10.0)
    tail *= np.sqrt(np.sum(rir**2) / (np.sum(tail**2) * 10 ** (drr_db / 10)))
    return (rir + tail).astype(np.float32), rt60


def reverberate(audio: np.ndarray, rir: np.ndarray) -> np.ndarray:
    """Convolve and keep the original length (the tail past the end is cut)."""
    return fftconvolve(audio, rir)[: len(audio)].astype(np.float32)
