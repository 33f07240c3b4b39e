"""Noise kinds of the held-out corpus: none of them is one of the demo's training kinds.

The demo corpus (and the pretrained teachers' on-the-fly mixtures) use ``white``, ``pink``,
``brown``, ``speech_shaped``, ``babble``, ``hum``, ``clicks`` and ``music``
(:data:`dfkd.data.demo.noise.NOISE_TYPES`). The held-out kinds, one per utterance, chosen uniformly:

``desktop_alerts`` (recorded)
    KDE's Oxygen desktop sounds (``oxygen-sounds``, Nuno Povoa, LGPL-3.0-or-later): chimes,
    alerts and ring tones placed at random onsets (0.7-2 per second, random gains), overlapping.
``game_effects`` (recorded)
    The sound effects of the game Heroes (``heroes-sound-effects``, GPL-2.0-or-later): clocks,
    crowds, explosions, horns, coins, voices, placed like ``desktop_alerts``.
``engine`` (synthetic)
    A motor or fan drone: a firing frequency of 25-90 Hz whose speed wanders (a smoothed random
    walk of ±8 %) with cycle-to-cycle jitter, 30 harmonics of random amplitudes, a slow amplitude
    modulation, and band-limited broadband "air" noise.
``rain`` (synthetic)
    Drops: 200-2000 per second, heavy-tailed amplitudes (Pareto, capped at 10x), each a short band-passed decaying
    burst at its own centre frequency, over a high-passed hiss.
``typing`` (synthetic)
    A keyboard: words of 2-9 keystrokes at 5-12 per second separated by 0.2-1.2 s pauses; each
    keystroke a press and a release 40-120 ms apart, each a resonant 10-25 ms burst of its key's own
    pitch, rarely a louder space bar. (The demo's ``clicks`` are 1-5 ms bursts, Poisson in time.)
``siren`` (synthetic)
    An emergency-vehicle siren: a wail (slow sweep, 3-6 s period) or yelp (fast, 0.2-0.4 s) between
    500-800 and 1200-1800 Hz, six odd-and-even harmonics, passing by (a level swell).

The recorded kinds need their Debian packages, unpacked into :func:`debian_root` by
``make system-packages`` (not installed: see :mod:`dfkd.data.demo.heldout`); a kind whose package is
missing is skipped with a warning, and the synthetic kinds are always available.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from scipy.signal import butter, lfilter, sosfilt

from ...audio import load_mono
from ... import SAMPLE_RATE

#: Where ``make system-packages`` unpacks the held-out corpus's Debian packages (one folder each).
DEFAULT_DEBIAN_ROOT = Path("/var/cache/dfkd/debian")
SYNTHETIC_KINDS: tuple[str, ...] = ("engine", "rain", "typing", "siren")


def debian_root() -> Path:
    """``$DFKD_DEBIAN_DIR`` or ``/var/cache/dfkd/debian``."""
    return Path(os.environ.get("DFKD_DEBIAN_DIR") or DEFAULT_DEBIAN_ROOT)


def package_files(package: str, under: str, suffixes: Sequence[str]) -> list[Path]:
    """Files under ``/usr/share/<under>`` of an unpacked Debian package (``debian_root()/package``)
    ending in ``suffixes``, sorted; empty when the package is not unpacked there."""
    folder = debian_root() / package / "usr" / "share" / under
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in suffixes)


@dataclass(frozen=True)
class RecordedKind:
    kind: str
    package: str
    folder: str  # under /usr/share, inside the package
    credit: str
    licence: str


RECORDED_KINDS: tuple[RecordedKind, ...] = (
    RecordedKind("desktop_alerts", "oxygen-sounds", "sounds",
                 "Oxygen desktop sounds by Nuno Filipe Povoa (KDE)", "LGPL-3.0-or-later"),
    RecordedKind("game_effects", "heroes-sound-effects", "games/heroes/sfx",
                 "Heroes sound effects by Alexandre Duret-Lutz, Romuald Genevois, Alexandre "
                 "Liverneaux and Philippe Meisburger", "GPL-2.0-or-later"),
)
NOISE_KINDS: tuple[str, ...] = tuple(k.kind for k in RECORDED_KINDS) + SYNTHETIC_KINDS


def recorded_clips(kind: RecordedKind) -> tuple[list[np.ndarray], list[str]]:
    """The kind's sound files as mono 16 kHz clips (silence trimmed) and their names; empty if absent."""
    clips, names = [], []
    for path in package_files(kind.package, kind.folder, (".wav", ".ogg")):
        audio = load_mono(path, SAMPLE_RATE, cache=False).astype(np.float32)
        audio = audio - np.float32(audio.mean()) if audio.size else audio
        loud = np.flatnonzero(np.abs(audio) > 1e-3 * (np.max(np.abs(audio)) + 1e-12))
        if loud.size == 0 or loud[-1] - loud[0] < SAMPLE_RATE // 20:
            continue  # silent, or shorter than 50 ms
        clips.append(audio[loud[0]:loud[-1] + 1] / np.float32(np.std(audio) + 1e-9))
        names.append(path.name)
    return clips, names


def events(rng: np.random.Generator, n: int, clips: Sequence[np.ndarray]) -> np.ndarray:
    """Clips at random onsets (0.7-2 per second, at least one), random gains, overlapping."""
    out = np.zeros(n, dtype=np.float64)
    count = max(1, int(round(rng.uniform(0.7, 2.0) * n / SAMPLE_RATE)))
    for _ in range(count):
        clip = np.asarray(clips[int(rng.integers(len(clips)))], dtype=np.float64)
        start = int(rng.integers(-len(clip) // 2, n))
        lo, hi = max(start, 0), min(start + len(clip), n)
        if hi > lo:
            out[lo:hi] += 10 ** (rng.uniform(-12, 0) / 20) * clip[lo - start:hi - start]
    if not np.any(out):
        out[:] = np.resize(np.asarray(clips[0], dtype=np.float64), n)
    return out.astype(np.float32)


def _smooth_walk(rng: np.random.Generator, n: int, seconds: float, depth: float) -> np.ndarray:
    """A random curve around 0 of about ``±depth``, changing over ``seconds``."""
    knots = max(int(n / (seconds * SAMPLE_RATE)) + 2, 2)
    values = np.cumsum(rng.standard_normal(knots))
    values = (values - values.mean()) / (np.std(values) + 1e-9) * depth / 2
    return np.interp(np.arange(n), np.linspace(0, n - 1, knots), values)


def engine(rng: np.random.Generator, n: int) -> np.ndarray:
    f0 = rng.uniform(25.0, 90.0)
    speed = f0 * (1 + _smooth_walk(rng, n, rng.uniform(0.5, 2.0), 0.16))
    speed *= 1 + 0.004 * rng.standard_normal(n).cumsum() / np.sqrt(np.arange(1, n + 1))  # jitter
    phase = 2 * np.pi * np.cumsum(speed) / SAMPLE_RATE
    amplitudes = rng.uniform(0.2, 1.0, 30) * np.arange(1, 31) ** -rng.uniform(0.3, 1.0)
    nyquist = SAMPLE_RATE / 2
    out = np.zeros(n)
    for k, (amp, offset) in enumerate(zip(amplitudes, rng.uniform(0, 2 * np.pi, 30)), start=1):
        if k * f0 * 1.1 < nyquist:
            out += amp * np.sin(k * phase + offset)
    out *= 1 + 0.3 * np.sin(2 * np.pi * rng.uniform(0.5, 4.0) * np.arange(n) / SAMPLE_RATE)
    out /= np.std(out) + 1e-9
    centre = rng.uniform(300, 2000)
    air = sosfilt(butter(2, [centre / 2, min(centre * 2, 7800)], btype="bandpass", fs=SAMPLE_RATE,
                         output="sos"), rng.standard_normal(n))
    out += rng.uniform(0.2, 0.7) * air / (np.std(air) + 1e-9)
    return (out / (np.std(out) + 1e-9)).astype(np.float32)


def rain(rng: np.random.Generator, n: int) -> np.ndarray:
    out = np.zeros(n)
    count = int(rng.uniform(200, 2000) * n / SAMPLE_RATE)
    drop = int(0.004 * SAMPLE_RATE)
    t = np.arange(drop)
    # A few drop "families" (surfaces) of their own centre frequency, each drop a decaying burst.
    for centre in rng.uniform(1500, 7000, size=4):
        sos = butter(2, [centre * 0.6, min(centre * 1.4, 7900)], btype="bandpass", fs=SAMPLE_RATE,
                     output="sos")
        impulses = np.zeros(n + drop)
        where = rng.integers(0, n, size=count // 4)
        np.add.at(impulses, where, np.minimum(rng.pareto(2.5, size=where.size) + 1, 10.0) * rng.choice([-1, 1], where.size))
        bursts = np.convolve(impulses, np.exp(-t / (drop / 5)))[:n]
        out += sosfilt(sos, bursts)
    hiss = sosfilt(butter(2, 2000, btype="highpass", fs=SAMPLE_RATE, output="sos"), rng.standard_normal(n))
    out = out / (np.std(out) + 1e-9) + rng.uniform(0.1, 0.4) * hiss / (np.std(hiss) + 1e-9)
    return (out / (np.std(out) + 1e-9)).astype(np.float32)


def _key(rng: np.random.Generator, pitch: float, seconds: float) -> np.ndarray:
    length = int(seconds * SAMPLE_RATE)
    r = np.exp(-np.pi * pitch / 8 / SAMPLE_RATE)  # bandwidth pitch / 8
    c1, c2 = 2 * r * np.cos(2 * np.pi * pitch / SAMPLE_RATE), -r * r
    excitation = rng.standard_normal(length) * np.exp(-np.arange(length) / (length / 6))
    return lfilter([1.0], [1.0, -c1, -c2], excitation)


def typing(rng: np.random.Generator, n: int) -> np.ndarray:
    out = 0.003 * rng.standard_normal(n)
    keys = rng.uniform(1200, 5000, size=40)  # this keyboard's key pitches
    position = int(rng.uniform(0, 0.3) * SAMPLE_RATE)
    while position < n:
        rate = rng.uniform(5, 12)
        for _ in range(int(rng.integers(2, 10))):
            space = rng.random() < 0.08
            pitch = rng.uniform(400, 900) if space else keys[int(rng.integers(len(keys)))]
            gain = rng.uniform(1.0, 1.6) if space else rng.uniform(0.4, 1.0)
            release = position + int(rng.uniform(0.04, 0.12) * SAMPLE_RATE)
            for start, level in ((position, gain), (release, 0.5 * gain)):
                burst = _key(rng, pitch * rng.uniform(0.97, 1.03), rng.uniform(0.01, 0.025))
                burst = burst / (np.max(np.abs(burst)) + 1e-9)
                stop = min(start + len(burst), n)
                if stop > start:
                    out[start:stop] += level * burst[: stop - start]
            position += int(SAMPLE_RATE / rate * rng.uniform(0.6, 1.4))
        position += int(rng.uniform(0.2, 1.2) * SAMPLE_RATE)
    return (out / (np.std(out) + 1e-9)).astype(np.float32)


def siren(rng: np.random.Generator, n: int) -> np.ndarray:
    t = np.arange(n) / SAMPLE_RATE
    low, high = rng.uniform(500, 800), rng.uniform(1200, 1800)
    period = rng.uniform(3.0, 6.0) if rng.random() < 0.5 else rng.uniform(0.2, 0.4)
    sweep = 0.5 - 0.5 * np.cos(2 * np.pi * t / period + rng.uniform(0, 2 * np.pi))
    freq = low + (high - low) * sweep
    phase = 2 * np.pi * np.cumsum(freq) / SAMPLE_RATE
    out = sum(k ** -1.2 * np.sin(k * phase) for k in range(1, 7))
    swell = np.exp(-0.5 * ((t - rng.uniform(0, t[-1] + 1e-3)) / rng.uniform(1.0, 4.0)) ** 2)
    out = out * (0.3 + swell) + 0.02 * rng.standard_normal(n)
    return (out / (np.std(out) + 1e-9)).astype(np.float32)


_SYNTHETIC = {"engine": engine, "rain": rain, "typing": typing, "siren": siren}


def make_noise(kind: str, rng: np.random.Generator, n: int,
               recorded: dict[str, list[np.ndarray]]) -> np.ndarray:
    """``n`` samples of held-out noise of ``kind``; ``recorded`` maps recorded kinds to their clips."""
    if kind in _SYNTHETIC:
        return _SYNTHETIC[kind](rng, n)
    if kind in recorded:
        return events(rng, n, recorded[kind])
    raise ValueError(f"unknown or unavailable held-out noise kind {kind!r}")
