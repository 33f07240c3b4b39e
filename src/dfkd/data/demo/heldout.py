"""The held-out test corpus: speakers *and* noise kinds that neither the demo corpus nor the
pretrained teachers' training ever saw (issue 10).

:func:`build_heldout_corpus` writes a test-only corpus in the layout of the demo corpus's test split
(``clean_testset_wav/``, ``noisy_testset_wav/``, ``README.md``, ``dfkd_corpus.json``,
``dfkd_corpus_items.csv``), so that ``dfkd evaluate --data DIR --split test`` scores a model on it:

* speech: three speakers of other Asterisk prompt packages (:data:`HELDOUT_SPEAKERS`), none of the
  demo's (allison, carlo, ivrvoice, june); their recordings are 8 kHz telephone-band (GSM 06.10 or
  PCM), upsampled to 16 kHz, so the set also tests a bandwidth the training had at full band;
* noise: the kinds of :mod:`dfkd.data.demo.heldout_noise`, none of the demo's eight;
* a wider SNR range than the demo's -5..15 dB (default -10..20 dB), a wider level spread
  (-38..-16 dBFS against -32..-20) and synthetic room reverberation on a quarter of the utterances
  (the demo's default is none; the clean target keeps the reverberation, as in the demo);
* the same bytes for the same settings: every random draw comes from ``(seed, item)``.

The Debian packages are *unpacked* (``apt-get download`` + ``dpkg-deb -x``), not installed, by
``make system-packages`` into ``/var/cache/dfkd/debian/<package>`` (``$DFKD_DEBIAN_DIR``):
``asterisk-prompt-es-co`` and ``asterisk-prompt-fr-armelle`` conflict with the demo's
``asterisk-core-sounds-es`` / ``-fr`` (installing them removes those and replaces the ``es`` / ``fr``
prompt folders the demo reads). A missing speaker or recorded noise kind is skipped with a warning;
with no speaker at all the build stops with a :class:`DfkdError` that says what to run.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import soundfile as sf
from tqdm import tqdm

from ... import __version__
from . import heldout_noise
from . import noise as demo_noise
from . import speech as speech_lib
from .build import (
    ITEMS_CSV, existing_corpus, fresh_partial, swap_into_place, write_corpus_records,
)
from ...audio import load_mono, resample, scale_to_snr, write_audio
from ...errors import DfkdError
from ... import SAMPLE_RATE

FORMAT_VERSION = 1
LEVEL_RANGE_DB = (-38.0, -16.0)
FOLDER = "testset_wav"


class HeldoutCorpusWarning(UserWarning):
    """A held-out speaker or noise kind was skipped (its package is not unpacked), or speech reused."""


@dataclass(frozen=True)
class HeldoutSpeaker:
    speaker: str
    person: str
    sex: str
    language: str
    package: str
    folder: str  # prompt folder under /usr/share/asterisk/sounds inside the package
    suffix: str  # ".gsm" (raw GSM 06.10, 8 kHz) or ".wav"
    licence: str


HELDOUT_SPEAKERS: tuple[HeldoutSpeaker, ...] = (
    HeldoutSpeaker("july", "July E. Jiménez (Avatar Ltda., Colombian Spanish)", "female", "es-co",
                   "asterisk-prompt-es-co", "es", ".gsm", "GPL-2"),
    HeldoutSpeaker("armelle", "Armelle Desjardins (copyright 2006 Michel Gutierrez)", "female", "fr",
                   "asterisk-prompt-fr-armelle", "fr", ".gsm", "BSD-style (retain the notice)"),
    HeldoutSpeaker("paola", "Paola Dal Zot and Marco Menardi, http://www.voip.ammdomus.it", "female",
                   "it", "asterisk-prompt-it-menardi-wav", "it_IT_f_Menardi", ".wav",
                   "CC-BY-SA-3.0-IT"),
)
HELDOUT_PACKAGES: tuple[str, ...] = (tuple(s.package for s in HELDOUT_SPEAKERS)
                                     + tuple(k.package for k in heldout_noise.RECORDED_KINDS))


@dataclass(frozen=True)
class HeldoutSettings:
    """What a held-out corpus is made of; two builds with equal settings give the same bytes."""

    minutes: float = 5.0
    seed: int = 0
    snr_min: float = -10.0
    snr_max: float = 20.0
    reverb_prob: float = 0.25

    def check(self) -> None:
        if self.minutes <= 0:
            raise DfkdError(f"--minutes must be positive, got {self.minutes}")
        if self.snr_min > self.snr_max:
            raise DfkdError(f"--snr-min {self.snr_min} exceeds --snr-max {self.snr_max}")
        if not 0.0 <= self.reverb_prob <= 1.0:
            raise DfkdError(f"--reverb-prob must lie in [0, 1], got {self.reverb_prob}")


def _demo_speakers() -> set[str]:
    return ({s.speaker for s in speech_lib.ASTERISK_SPEAKERS}
            | {v[0] for v in speech_lib.SYNTHETIC_VOICES})


# Held out by construction; checked here so that an edit to either corpus cannot break it silently.
assert not {s.speaker for s in HELDOUT_SPEAKERS} & _demo_speakers()
assert not set(heldout_noise.NOISE_KINDS) & set(demo_noise.NOISE_TYPES)


# ---------------------------------------------------------------------------------- clean speech
def _files(speaker: HeldoutSpeaker) -> list[Path]:
    return heldout_noise.package_files(speaker.package, f"asterisk/sounds/{speaker.folder}",
                                       (speaker.suffix,))


def _decode(path: Path) -> np.ndarray:
    if path.suffix == ".gsm":  # headerless GSM 06.10 (33-byte frames) at 8 kHz: libsndfile's RAW
        audio, rate = sf.read(path, format="RAW", subtype="GSM610", samplerate=8000, channels=1,
                              dtype="float32")
        return resample(audio, rate, SAMPLE_RATE)
    return load_mono(path, SAMPLE_RATE, cache=False)


def speaker_prompts(speaker: HeldoutSpeaker) -> list[tuple[str, np.ndarray]]:
    """Trimmed prompts of one held-out speaker, as :func:`dfkd.data.demo.speech.asterisk_prompts`."""
    root = heldout_noise.debian_root() / speaker.package / "usr/share/asterisk/sounds" / speaker.folder
    prompts = []
    for path in _files(speaker):
        rel = path.relative_to(root).as_posix()
        if rel.startswith("silence/"):
            continue
        audio = speech_lib.trim_silence(_decode(path))
        audio = audio - np.float32(audio.mean()) if audio.size else audio
        if len(audio) < speech_lib.MIN_PROMPT_SECONDS * SAMPLE_RATE:
            continue
        for k, piece in enumerate(speech_lib.split_long(audio)):
            prompts.append((f"{speaker.speaker}/{rel}" + (f"#{k}" if k else ""),
                            piece.astype(np.float32)))
    return prompts


def available_speakers() -> tuple[list[HeldoutSpeaker], list[str]]:
    """The speakers whose packages are unpacked, and the packages that are missing."""
    found = [s for s in HELDOUT_SPEAKERS if _files(s)]
    return found, [s.package for s in HELDOUT_SPEAKERS if s not in found]


def available_noise() -> tuple[list[str], list[str]]:
    """The noise kinds that can be made, and the packages of recorded kinds that are missing."""
    kinds, missing = [], []
    for kind in heldout_noise.RECORDED_KINDS:
        if heldout_noise.package_files(kind.package, kind.folder, (".wav", ".ogg")):
            kinds.append(kind.kind)
        else:
            missing.append(kind.package)
    return kinds + list(heldout_noise.SYNTHETIC_KINDS), missing


def missing_packages() -> list[str]:
    """Held-out packages not unpacked in :func:`~dfkd.data.demo.heldout_noise.debian_root`."""
    return available_speakers()[1] + available_noise()[1]


def _utterances(speakers: list[HeldoutSpeaker], settings: HeldoutSettings, progress: bool
                ) -> list[tuple[HeldoutSpeaker, list[str], np.ndarray]]:
    streams = []
    for index, speaker in enumerate(tqdm(speakers, desc="decoding held-out speech", unit="speaker",
                                         disable=not progress, file=sys.stderr, leave=False)):
        rng = np.random.default_rng([settings.seed, 111, index])
        streams.append([(speaker, names, audio)
                        for names, audio in speech_lib.concatenate(speaker_prompts(speaker), rng)])
    order = [s[k] for k in range(max(map(len, streams), default=0)) for s in streams if k < len(s)]
    if not order:
        raise DfkdError("held-out corpus: the speech packages hold no usable prompts")
    budget, taken, total = 60.0 * settings.minutes, [], 0.0
    while total < budget:
        taken.append(order[len(taken) % len(order)])
        total += len(taken[-1][2]) / SAMPLE_RATE
    if len(taken) > len(order):
        warnings.warn(f"held-out corpus: {settings.minutes:.1f} min asked for but the speech only has "
                      f"{sum(len(u[2]) for u in order) / SAMPLE_RATE / 60:.1f} min; utterances are "
                      "reused with new noise", HeldoutCorpusWarning, stacklevel=3)
    return taken


# ------------------------------------------------------------------------------------- mixing
def _mix(clean: np.ndarray, index: int, settings: HeldoutSettings, kinds: list[str],
         recorded: dict[str, list[np.ndarray]]) -> tuple[np.ndarray, np.ndarray, dict]:
    rng = np.random.default_rng([settings.seed, 505, index])
    kind = kinds[int(rng.integers(len(kinds)))]
    snr = float(rng.uniform(settings.snr_min, settings.snr_max))
    level_db = float(rng.uniform(*LEVEL_RANGE_DB))
    clean = clean.astype(np.float32)
    rt60 = 0.0
    if rng.random() < settings.reverb_prob:
        rir, rt60 = demo_noise.synthetic_rir(rng)
        clean = demo_noise.reverberate(clean, rir)  # the target keeps the reverberation
    clean_rms = float(np.sqrt(np.mean(clean.astype(np.float64) ** 2)))
    clean = clean * np.float32(10 ** (level_db / 20) / (clean_rms + 1e-12))
    noise = heldout_noise.make_noise(kind, rng, len(clean), recorded)
    noisy = clean + scale_to_snr(clean, noise, snr)
    peak = float(np.max(np.abs(noisy)))
    if peak > 0.99:  # scale both: the SNR stays as drawn
        clean, noisy = clean * np.float32(0.99 / peak), noisy * np.float32(0.99 / peak)
    return noisy, clean, {"noise": kind, "snr_db": round(snr, 3), "level_db": round(level_db, 2),
                          "rt60_s": round(rt60, 3)}


# ------------------------------------------------------------------------------------ metadata
def _licence(speakers: list[HeldoutSpeaker], kinds: list[str]) -> dict:
    recorded = {k.kind: k for k in heldout_noise.RECORDED_KINDS}
    return {
        "speech": {s.speaker: f"{s.person} ({s.package}), {s.licence}" for s in speakers},
        "noise": {k: (f"{recorded[k].credit} ({recorded[k].package}), {recorded[k].licence}"
                      if k in recorded else "synthetic, made by dfkd") for k in kinds},
        "corpus": f"each file is derived from the speech and noise named in its row of {ITEMS_CSV}: "
                  "redistribute it under those recordings' licences, keep these credits, and show "
                  "the Italian voice's site (http://www.voip.ammdomus.it) as its licence asks; full "
                  "texts in each package's usr/share/doc/<package>/copyright",
    }


def _readme(meta: dict) -> str:
    info = meta["splits"]["test"]
    lines = ["# dfkd held-out test corpus\n",
             f"Built by `dfkd corpus heldout` (dfkd {meta['dfkd_version']}) with settings "
             f"`{json.dumps(meta['settings'])}`.\n",
             "VoiceBank+DEMAND layout, test split only (`clean_testset_wav/`, `noisy_testset_wav/`), "
             "16 kHz mono PCM-16. Score a model with `dfkd evaluate --data <this folder> --split test`.\n",
             "Nothing here is in the demo corpus or in the pretrained teachers' training: speakers "
             f"{', '.join(info['speakers'])} (the demo's are {', '.join(meta['excluded']['speakers'])}); "
             f"noise kinds {', '.join(meta['noise_types'])} (the demo's are "
             f"{', '.join(meta['excluded']['noise_types'])}).\n",
             "| speaker | language | utterances | minutes |", "|---|---|---|---|"]
    for name, row in meta["speakers"].items():
        lines.append(f"| {name} | {row['language']} | {row['utterances']} | {row['minutes']:.1f} |")
    lines += ["", f"Speech: 8 kHz telephone-band recordings upsampled to 16 kHz (no energy above 4 kHz). "
              f"SNR uniform in [{meta['snr_db'][0]}, {meta['snr_db'][1]}] dB (global, noisy vs clean); "
              f"speech level uniform in [{meta['level_dbfs'][0]}, {meta['level_dbfs'][1]}] dBFS; "
              f"reverberation probability {meta['settings']['reverb_prob']} (synthetic RIRs, RT60 "
              f"0.2-0.8 s; the clean target keeps the reverberation). Per-file facts: {ITEMS_CSV}."]
    if meta["skipped"]:
        lines += ["", "Skipped (package not unpacked): " + ", ".join(meta["skipped"]) + "."]
    lines += ["", "## Licence", ""]
    for key, value in meta["licence"].items():
        value = "; ".join(f"{k}: {v}" for k, v in value.items()) if isinstance(value, dict) else value
        lines.append(f"- {key}: {value}")
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------- building
def build_heldout_corpus(out: str | os.PathLike, settings: HeldoutSettings = HeldoutSettings(), *,
                         force: bool = False, progress: bool = True,
                         log: Callable[[str], None] = print) -> dict:
    """Build the held-out corpus at ``out`` and return its metadata (``dfkd_corpus.json``).

    An existing corpus with the same settings and sources is left alone (``meta["built"]`` is
    False); one with other settings raises a :class:`DfkdError` unless ``force`` replaces it.
    """
    settings.check()
    out = Path(out)
    speakers, missing_speech = available_speakers()
    kinds, missing_noise = available_noise()
    if not speakers:
        raise DfkdError("held-out corpus: none of its speech packages is unpacked in "
                        f"{heldout_noise.debian_root()} (missing {', '.join(missing_speech)}); run "
                        "`make system-packages` as root, or unpack them there with `apt-get download "
                        "PKG && dpkg-deb -x PKG_*.deb DIR/PKG` and set DFKD_DEBIAN_DIR=DIR")
    for package in missing_speech + missing_noise:
        warnings.warn(f"held-out corpus: {package} is not unpacked in {heldout_noise.debian_root()}; "
                      "its speaker/noise kind is skipped (`make system-packages` unpacks it)",
                      HeldoutCorpusWarning, stacklevel=2)
    wanted = {**asdict(settings), "format": FORMAT_VERSION,
              "speakers": [s.speaker for s in speakers], "noise_types": kinds}
    previous = existing_corpus(out)
    if previous is not None:
        if previous.get("settings") == wanted:
            log(f"{out}: held-out corpus already built with these settings; nothing to do")
            return {**previous, "built": False}
        if not force:
            raise DfkdError(f"{out}: holds a corpus built with other settings "
                            f"({previous.get('settings')}); use --force to replace it")
    started = time.monotonic()
    tmp = fresh_partial(out)
    try:
        meta = _build_into(tmp, settings, wanted, speakers, kinds, missing_speech + missing_noise,
                           progress)
        swap_into_place(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    seconds = time.monotonic() - started
    info = meta["splits"]["test"]
    log(f"{out}: held-out corpus built in {seconds:.1f} s (test {info['utterances']} utt / "
        f"{info['minutes']:.1f} min; speakers {', '.join(info['speakers'])}; noise "
        f"{', '.join(kinds)}; SNR {settings.snr_min:g}..{settings.snr_max:g} dB; reverb "
        f"{settings.reverb_prob:g})")
    return {**meta, "built": True, "build_seconds": seconds}


def _build_into(tmp: Path, settings: HeldoutSettings, wanted: dict, speakers: list[HeldoutSpeaker],
                kinds: list[str], skipped: list[str], progress: bool) -> dict:
    utterances = _utterances(speakers, settings, progress)
    recorded, origin = {}, {}
    for kind in heldout_noise.RECORDED_KINDS:
        if kind.kind in kinds:
            recorded[kind.kind], origin[kind.kind] = heldout_noise.recorded_clips(kind)
    rows, counters, per_speaker = [], {}, {}
    for index, (speaker, sources, audio) in enumerate(tqdm(
            utterances, desc="held-out corpus", unit="utt", disable=not progress, file=sys.stderr)):
        counters[speaker.speaker] = counters.get(speaker.speaker, 0) + 1
        name = f"{speaker.speaker}_{counters[speaker.speaker]:04d}"
        noisy, clean, facts = _mix(audio, index, settings, kinds, recorded)
        write_audio(tmp / f"noisy_{FOLDER}" / f"{name}.wav", noisy, SAMPLE_RATE)
        write_audio(tmp / f"clean_{FOLDER}" / f"{name}.wav", clean, SAMPLE_RATE)
        seconds = len(clean) / SAMPLE_RATE
        rows.append({"name": name, "split": "test", "speaker": speaker.speaker,
                     "language": speaker.language, "seconds": round(seconds, 3), **facts,
                     "sources": " + ".join(sources)})
        row = per_speaker.setdefault(speaker.speaker, {"language": speaker.language,
                                                       "package": speaker.package,
                                                       "utterances": 0, "minutes": 0.0})
        row["utterances"] += 1
        row["minutes"] += seconds / 60
    for row in per_speaker.values():
        row["minutes"] = round(row["minutes"], 2)
    used = sorted(per_speaker)
    meta = {
        "dfkd_corpus": "heldout", "dfkd_version": __version__, "settings": wanted,
        "speech": "asterisk-prompt", "sample_rate": SAMPLE_RATE, "layout": "voicebank",
        "valid_speakers": [],
        "splits": {"test": {"speakers": used,
                            "languages": sorted({per_speaker[s]["language"] for s in used}),
                            "utterances": len(utterances),
                            "minutes": round(sum(len(u[2]) for u in utterances) / SAMPLE_RATE / 60, 2)}},
        "speakers": per_speaker, "snr_db": [settings.snr_min, settings.snr_max],
        "level_dbfs": list(LEVEL_RANGE_DB), "reverb_prob": settings.reverb_prob,
        "noise_types": kinds, "noise_files": origin, "skipped": skipped,
        "excluded": {"speakers": sorted(_demo_speakers()), "noise_types": list(demo_noise.NOISE_TYPES)},
        "licence": _licence(speakers, kinds),
    }
    write_corpus_records(tmp, rows, _readme(meta), meta)
    return meta
