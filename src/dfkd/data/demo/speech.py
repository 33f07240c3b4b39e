"""Clean speech for the demo corpus: real recorded prompts from Debian's Asterisk sound packages,
or, where those are missing, a synthetic stand-in.

Real speech
    ``asterisk-core-sounds-{en,es,fr,it,ru}-g722``: telephone-system prompts recorded in studio
    conditions at 16 kHz, stored as G.722 (decoded with the PyPI ``g722`` package). ``en`` and ``es``
    are both recorded by Allison Smith, so they are one speaker: the demo's splits keep them
    together. Prompts are trimmed of leading/trailing silence, very short ones are dropped, long
    ones split at their quietest point, and the rest concatenated into 2-6 s utterances.
Synthetic speech
    A source-filter toy: voiced "vowels" (harmonics of a gliding f0 through three formant
    resonators) and unvoiced "fricatives" (band-passed noise), grouped into words and phrases. Each
    synthetic speaker has its own f0 and vocal-tract scale. It is not speech, but it has speech's
    harmonic structure, formants, onsets and pauses, which is what an SE model needs to learn from.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
from scipy.signal import butter, lfilter, sosfilt
from ... import SAMPLE_RATE

ASTERISK_SOUNDS = Path("/usr/share/asterisk/sounds")
ASTERISK_DOC = Path("/usr/share/doc")
MIN_PROMPT_SECONDS = 0.3
UTTERANCE_SECONDS = (2.0, 6.0)


@dataclass(frozen=True)
class Speaker:
    """One talker of the demo corpus. ``sources`` are Asterisk language folders (real speech)."""

    speaker: str
    person: str
    sex: str
    sources: tuple[str, ...]
    licence: str
    package: str = ""


# Which person recorded which language, from the packages' debian/copyright files.
ASTERISK_SPEAKERS: tuple[Speaker, ...] = (
    Speaker("allison", "Allison Smith", "female", ("en", "es"), "CC-BY-SA-3.0",
            "asterisk-core-sounds-en-g722, asterisk-core-sounds-es-g722"),
    Speaker("carlo", "Carlo Flora", "male", ("it",), "CC-BY-3.0", "asterisk-core-sounds-it-g722"),
    Speaker("ivrvoice", "ivrvoice.ru voice (provided by Maxim Topal)", "female", ("ru",),
            "CC-BY-3.0", "asterisk-core-sounds-ru-g722"),
    Speaker("june", "June Wallack", "female", ("fr",), "CC-BY-SA-3.0",
            "asterisk-core-sounds-fr-g722"),
)
#: Speaker-disjoint splits of the real corpus: 3 languages / 2 speakers (one male) for training.
ASTERISK_SPLITS: dict[str, tuple[str, ...]] = {
    "train": ("allison", "carlo"), "valid": ("ivrvoice",), "test": ("june",),
}
ASTERISK_PACKAGES = tuple(f"asterisk-core-sounds-{lang}-g722" for lang in ("en", "es", "fr", "it", "ru"))

# Synthetic speakers: (name, sex, mean f0 in Hz, vocal-tract scale applied to formants).
SYNTHETIC_VOICES: tuple[tuple[str, str, float, float], ...] = (
    ("synth0", "male", 105.0, 1.00), ("synth1", "female", 205.0, 1.17),
    ("synth2", "male", 130.0, 1.05), ("synth3", "female", 180.0, 1.12),
    ("synth4", "female", 230.0, 1.20),
)
SYNTHETIC_SPLITS: dict[str, tuple[str, ...]] = {
    "train": ("synth0", "synth1", "synth2"), "valid": ("synth3",), "test": ("synth4",),
}
# First three formants (Hz) of a few vowels of an adult male voice (Peterson & Barney style).
_VOWELS = np.array([[730, 1090, 2440], [530, 1840, 2480], [270, 2290, 3010],
                    [570, 840, 2410], [300, 870, 2240], [660, 1720, 2410], [490, 1350, 1690]],
                   dtype=np.float64)


def missing_asterisk_sources() -> list[str]:
    """Asterisk language folders that are absent or empty (empty list: real speech available)."""
    missing = []
    for speaker in ASTERISK_SPEAKERS:
        for lang in speaker.sources:
            folder = ASTERISK_SOUNDS / lang
            if not folder.is_dir() or next(folder.rglob("*.g722"), None) is None:
                missing.append(f"asterisk-core-sounds-{lang}-g722")
    return missing


def decode_g722(path: Path) -> np.ndarray:
    """Decode a 64 kbit/s G.722 file to 16 kHz float32 (the ``g722`` package returns int16)."""
    import G722  # imported here: only the real-speech path needs the codec

    pcm = G722.G722(SAMPLE_RATE, 64000).decode(path.read_bytes())
    return np.asarray(np.frombuffer(pcm, dtype=np.int16), dtype=np.float32) / 32768.0


def _frame_db(audio: np.ndarray, frame: int) -> np.ndarray:
    frames = len(audio) // frame
    if frames == 0:
        return np.full(1, -120.0)
    power = np.mean(audio[: frames * frame].reshape(frames, frame).astype(np.float64) ** 2, axis=1)
    return 10 * np.log10(power + 1e-12)


def trim_silence(audio: np.ndarray, threshold_db: float = 40.0, margin_s: float = 0.05) -> np.ndarray:
    """Cut leading/trailing frames more than ``threshold_db`` below the loudest 20 ms frame."""
    frame = SAMPLE_RATE // 50
    level = _frame_db(audio, frame)
    active = np.flatnonzero(level > max(level.max() - threshold_db, -70.0))
    if active.size == 0:
        return audio[:0]
    margin = int(margin_s * SAMPLE_RATE)
    start = max(active[0] * frame - margin, 0)
    stop = min((active[-1] + 1) * frame + margin, len(audio))
    return audio[start:stop]


def split_long(audio: np.ndarray, max_seconds: float = UTTERANCE_SECONDS[1]) -> list[np.ndarray]:
    """Split a prompt longer than ``max_seconds`` at the quietest 20 ms frame of its middle half."""
    if len(audio) <= max_seconds * SAMPLE_RATE:
        return [audio]
    frame = SAMPLE_RATE // 50
    level = _frame_db(audio, frame)
    lo, hi = len(level) // 4, max(3 * len(level) // 4, len(level) // 4 + 1)
    cut = (lo + int(np.argmin(level[lo:hi]))) * frame + frame // 2
    return split_long(audio[:cut], max_seconds) + split_long(audio[cut:], max_seconds)


def asterisk_prompts(lang: str) -> list[tuple[str, np.ndarray]]:
    """Trimmed prompts of one language, ``(relative name, audio)``, in sorted file order.

    The ``silence/`` folder (recorded silences) is skipped; prompts shorter than 0.3 s after
    trimming are dropped; longer than 6 s are split.
    """
    folder = ASTERISK_SOUNDS / lang
    prompts = []
    for path in sorted(folder.rglob("*.g722")):
        rel = path.relative_to(folder).as_posix()
        if not rel.startswith("silence/"):
            prompts += prompt_pieces(path, f"{lang}/{rel}")
    return prompts


def prompt_pieces(path: Path, name: str) -> list[tuple[str, np.ndarray]]:
    """One prompt file as :func:`asterisk_prompts` lists it: trimmed, without its DC offset, split
    when long (``name#1``...); empty when shorter than 0.3 s after trimming."""
    audio = trim_silence(decode_g722(path))
    audio = audio - np.float32(audio.mean()) if audio.size else audio  # codec DC offset
    if len(audio) < MIN_PROMPT_SECONDS * SAMPLE_RATE:
        return []
    return [(name + (f"#{k}" if k else ""), piece.astype(np.float32))
            for k, piece in enumerate(split_long(audio))]


def concatenate(prompts: Sequence[tuple[str, np.ndarray]], rng: np.random.Generator
                ) -> Iterator[tuple[list[str], np.ndarray]]:
    """Group prompts (in a seeded random order) into utterances of 2-6 s with short pauses."""
    order = rng.permutation(len(prompts))
    low, high = (int(s * SAMPLE_RATE) for s in UTTERANCE_SECONDS)
    names: list[str] = []
    pieces: list[np.ndarray] = []
    length, target = 0, int(rng.uniform(low, high))
    for index in order:
        name, audio = prompts[int(index)]
        gap = int(rng.uniform(0.15, 0.4) * SAMPLE_RATE) if pieces else 0
        if pieces and length + gap + len(audio) > high:
            if length < low and len(audio) >= low:
                # Too short to close: let the long prompt stand alone, keep filling this one.
                yield [name], audio
                continue
            yield names, np.concatenate(pieces)
            names, pieces, length, gap = [], [], 0, 0
            target = int(rng.uniform(low, high))
        if gap:
            pieces.append(np.zeros(gap, dtype=np.float32))
        pieces.append(audio)
        names.append(name)
        length += gap + len(audio)
        if length >= target:
            yield names, np.concatenate(pieces)
            names, pieces, length = [], [], 0
            target = int(rng.uniform(low, high))
    if pieces and length >= low:
        yield names, np.concatenate(pieces)


# ---------------------------------------------------------------------------------- synthetic
def _resonator(audio: np.ndarray, freq: float, bandwidth: float) -> np.ndarray:
    """A two-pole formant resonator (Klatt style), unit gain at DC."""
    r = math.exp(-math.pi * bandwidth / SAMPLE_RATE)
    c1, c2 = 2 * r * math.cos(2 * math.pi * freq / SAMPLE_RATE), -r * r
    return lfilter([1 - c1 - c2], [1, -c1, -c2], audio)


def _vowel(rng: np.random.Generator, f0: float, scale: float, seconds: float) -> np.ndarray:
    n = int(seconds * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE
    glide = f0 * (1 + rng.uniform(-0.12, 0.12) * t / max(seconds, 1e-3))
    vibrato = 1 + 0.01 * np.sin(2 * np.pi * rng.uniform(4, 6) * t)
    cycles = np.cumsum(glide * vibrato) / SAMPLE_RATE
    # Glottal source: one pulse per period (rounded to a sample, a natural-sounding jitter) through
    # a two-pole low-pass, so that the harmonics fall by about 12 dB per octave.
    source = np.zeros(n)
    source[np.flatnonzero(np.diff(np.floor(cycles), prepend=-1.0))] = 1.0
    source = lfilter([1.0], [1.0, -1.9, 0.9025], source - source.mean())
    formants = _VOWELS[rng.integers(len(_VOWELS))] * scale
    out = np.zeros(n)
    for k, (freq, gain) in enumerate(zip(formants, (1.0, 0.5, 0.25), strict=True)):
        out += gain * _resonator(source, freq * rng.uniform(0.95, 1.05), 60 + 40 * k)
    envelope = np.minimum(1, np.minimum(t, t[::-1]) / 0.025)  # 25 ms attack/release
    return out * envelope


def _fricative(rng: np.random.Generator, seconds: float) -> np.ndarray:
    n = int(seconds * SAMPLE_RATE)
    centre = rng.uniform(2500, 6500)
    sos = butter(2, [centre * 0.7, min(centre * 1.3, 7800)], btype="bandpass", fs=SAMPLE_RATE,
                 output="sos")
    envelope = np.hanning(n) if n > 1 else np.ones(n)
    return sosfilt(sos, rng.standard_normal(n)) * envelope * 0.3


def synthetic_utterance(rng: np.random.Generator, f0: float, scale: float, seconds: float
                        ) -> np.ndarray:
    """About ``seconds`` of synthetic "speech": words of 1-3 syllables separated by pauses."""
    pieces: list[np.ndarray] = []
    total, target = 0, int(seconds * SAMPLE_RATE)
    declination = f0 * 1.1
    while total < target:
        for _ in range(int(rng.integers(1, 4))):
            if rng.random() < 0.5:
                pieces.append(_fricative(rng, rng.uniform(0.05, 0.12)))
            pieces.append(_vowel(rng, declination * rng.uniform(0.9, 1.1), scale,
                                 rng.uniform(0.08, 0.25)))
        pieces.append(np.zeros(int(rng.uniform(0.05, 0.3) * SAMPLE_RATE)))
        total = sum(len(p) for p in pieces)
        declination = max(declination * 0.97, f0 * 0.8)  # pitch falls over a phrase
    audio = np.concatenate(pieces)[:target]
    return (audio / (np.max(np.abs(audio)) + 1e-9) * 0.5).astype(np.float32)
