"""The offline demo corpus: real (or synthetic) speech mixed with offline-made noise.

:func:`build_demo_corpus` writes a VoiceBank+DEMAND-shaped corpus (16 kHz files) that
:func:`dfkd.data.datasets.corpus_pairs` reads like the real one:

* clean speech from :mod:`dfkd.data.demo.speech` (Asterisk prompts: five languages, four speakers;
  synthetic voices where the Debian packages are missing, with a warning, or with ``synthetic``);
* noise and optional reverberation from :mod:`dfkd.data.demo.noise`, mixed at a global SNR drawn
  uniformly in ``[snr_min, snr_max]``, with the clean speech at a random level of -32..-20 dBFS;
* speaker-disjoint splits: training and validation utterances go to the ``*_trainset_28spk_wav``
  folders and ``dfkd_corpus.json`` names the validation speakers; test to ``*_testset_wav``;
* the same bytes for the same settings: every random draw comes from ``(seed, split, item)``.

The corpus is built in a hidden temporary folder beside ``out`` and renamed into place at the end,
so an interrupted build never leaves a half corpus; building again with the same settings is a
no-op.
"""

from __future__ import annotations

import csv
import io
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
from tqdm import tqdm

from ... import __version__
from . import noise as noise_lib
from . import speech as speech_lib
from ...audio import scale_to_snr, write_audio
from ...files import write_json, write_text
from ..layouts import CORPUS_META
from ...errors import DfkdError
from ... import SAMPLE_RATE

FORMAT_VERSION = 1
ITEMS_CSV = "dfkd_corpus_items.csv"
LEVEL_RANGE_DB = (-32.0, -20.0)
_SPLIT_INDEX = {"train": 0, "valid": 1, "test": 2}
_FOLDERS = {"train": "trainset_28spk_wav", "valid": "trainset_28spk_wav", "test": "testset_wav"}


class DemoCorpusWarning(UserWarning):
    """The demo corpus had to fall back (synthetic speech, reused utterances)."""


@dataclass(frozen=True)
class DemoSettings:
    """What a demo corpus is made of; two builds with equal settings give the same bytes.

    ``valid_minutes`` / ``test_minutes`` default to ``minutes / 6``.
    """

    minutes: float = 30.0
    valid_minutes: float | None = None
    test_minutes: float | None = None
    seed: int = 0
    snr_min: float = -5.0
    snr_max: float = 15.0
    reverb_prob: float = 0.0
    synthetic: bool = False

    def budget_seconds(self, split: str) -> float:
        minutes = {"train": self.minutes, "valid": self.valid_minutes,
                   "test": self.test_minutes}[split]
        return 60.0 * (self.minutes / 6 if minutes is None else minutes)

    def check(self) -> None:
        if self.minutes <= 0:
            raise DfkdError(f"--minutes must be positive, got {self.minutes}")
        for name in ("valid_minutes", "test_minutes"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise DfkdError(f"--{name.replace('_', '-')} must be positive, got {value}")
        if self.snr_min > self.snr_max:
            raise DfkdError(f"--snr-min {self.snr_min} exceeds --snr-max {self.snr_max}")
        if not 0.0 <= self.reverb_prob <= 1.0:
            raise DfkdError(f"--reverb-prob must lie in [0, 1], got {self.reverb_prob}")


@dataclass
class Utterance:
    speaker: str
    language: str
    sources: list[str]
    audio: np.ndarray


# ---------------------------------------------------------------------------------- clean speech
def _take(streams: list[list[Utterance]], budget_s: float, split: str) -> list[Utterance]:
    """Round-robin over the sources (languages/voices) until ``budget_s`` seconds are taken.

    When the sources run dry they are reused (each reuse gets new noise); that is warned about.
    """
    longest = max((len(s) for s in streams), default=0)
    order = [stream[k] for k in range(longest) for stream in streams if k < len(stream)]
    if not order:
        raise DfkdError(f"demo corpus: no usable speech for the {split} split")
    taken: list[Utterance] = []
    total = 0.0
    while total < budget_s:
        utterance = order[len(taken) % len(order)]
        taken.append(utterance)
        total += len(utterance.audio) / SAMPLE_RATE
    passes = (len(taken) - 1) // len(order)
    if passes:
        warnings.warn(f"demo corpus: the {split} split asked for {budget_s / 60:.1f} min but the "
                      f"speech only has {sum(len(u.audio) for u in order) / SAMPLE_RATE / 60:.1f}"
                      " min; utterances are reused with new noise", DemoCorpusWarning, stacklevel=3)
    return taken


def _asterisk_utterances(split: str, settings: DemoSettings, progress: bool) -> list[Utterance]:
    speakers = {s.speaker: s for s in speech_lib.ASTERISK_SPEAKERS}
    sources = [(name, lang) for name in speech_lib.ASTERISK_SPLITS[split]
               for lang in speakers[name].sources]
    streams = []
    for name, lang in tqdm(sources, desc=f"decoding {split} speech", unit="language",
                           disable=not progress, file=sys.stderr, leave=False):
        rng = np.random.default_rng([settings.seed, 101, sum(map(ord, lang))])
        prompts = speech_lib.asterisk_prompts(lang)
        streams.append([Utterance(name, lang, names, audio)
                        for names, audio in speech_lib.concatenate(prompts, rng)])
    return _take(streams, settings.budget_seconds(split), split)


def _synthetic_utterances(split: str, settings: DemoSettings, progress: bool) -> list[Utterance]:
    voices = {v[0]: v for v in speech_lib.SYNTHETIC_VOICES}
    names = speech_lib.SYNTHETIC_SPLITS[split]
    budget = settings.budget_seconds(split)
    taken: list[Utterance] = []
    total, k = 0.0, 0
    while total < budget:  # synthetic speech never runs dry: make exactly what is asked
        name = names[k % len(names)]
        _, _, f0, scale = voices[name]
        rng = np.random.default_rng([settings.seed, 202, int(name[-1]), k])
        audio = speech_lib.synthetic_utterance(rng, f0, scale, rng.uniform(*speech_lib.UTTERANCE_SECONDS))
        taken.append(Utterance(name, "synthetic", [f"synthetic #{k}"], audio))
        total += len(audio) / SAMPLE_RATE
        k += 1
    return taken


def _real_speech_missing() -> list[str]:
    missing = speech_lib.missing_asterisk_sources()
    try:
        import G722  # noqa: F401
    except ImportError:
        missing.append("the PyPI package g722 (pip install g722)")
    return missing


def speech_source(settings: DemoSettings) -> str:
    """``"asterisk"`` or ``"synthetic"`` (with a warning when the real speech is unavailable)."""
    if settings.synthetic:
        return "synthetic"
    missing = _real_speech_missing()
    if missing:
        warnings.warn("demo corpus: real speech unavailable (missing " + ", ".join(missing) +
                      "; install with `make system-packages`); falling back to synthetic speech",
                      DemoCorpusWarning, stacklevel=3)
        return "synthetic"
    return "asterisk"


# ------------------------------------------------------------------------------------- mixing
def _mix(utterance: Utterance, index: int, split: str, settings: DemoSettings,
         pool: list[np.ndarray], ltas, music) -> tuple[np.ndarray, np.ndarray, dict]:
    """Noisy and clean (reverberant when reverb applies) versions of one utterance, and its facts."""
    rng = np.random.default_rng([settings.seed, 303, _SPLIT_INDEX[split], index])
    kind = noise_lib.NOISE_TYPES[int(rng.integers(len(noise_lib.NOISE_TYPES)))]
    snr = float(rng.uniform(settings.snr_min, settings.snr_max))
    level_db = float(rng.uniform(*LEVEL_RANGE_DB))
    clean = utterance.audio.astype(np.float32)
    rt60 = 0.0
    if rng.random() < settings.reverb_prob:
        rir, rt60 = noise_lib.synthetic_rir(rng)
        clean = noise_lib.reverberate(clean, rir)  # target stays reverberant (DNS 2020 convention)
    clean_rms = float(np.sqrt(np.mean(clean.astype(np.float64) ** 2)))
    clean = clean * np.float32(10 ** (level_db / 20) / (clean_rms + 1e-12))
    # Babble never uses the utterance itself (nor its copies when utterances are reused).
    itself = {k for k, other in enumerate(pool) if other is utterance.audio}
    noise = noise_lib.make_noise(kind, rng, len(clean), pool=pool, exclude=itself, ltas=ltas,
                                 music=music)
    noisy = clean + scale_to_snr(clean, noise, snr)
    peak = float(np.max(np.abs(noisy)))
    if peak > 0.99:  # scale both: the SNR stays as drawn
        clean, noisy = clean * np.float32(0.99 / peak), noisy * np.float32(0.99 / peak)
    facts = {"noise": kind, "snr_db": round(snr, 3), "level_db": round(level_db, 2),
             "rt60_s": round(rt60, 3)}
    return noisy, clean, facts


# ------------------------------------------------------------------------------------ metadata
def _licence_text(source: str) -> dict:
    if source == "synthetic":
        return {"speech": "synthetic speech generated by dfkd (no third-party material)",
                "music": "synthetic notes generated by dfkd",
                "corpus": "made entirely by dfkd; same terms as dfkd (MIT)"}
    people = {s.speaker: f"{s.person} ({s.package}), {s.licence}" for s in speech_lib.ASTERISK_SPEAKERS}
    return {
        "speech": people,
        "music": "asterisk-moh-opsound-wav: Paul Shuler (Macroform), Manolo Camp, Reno Project; "
                 "CC-BY-SA-3.0",
        "corpus": "derived from CC-BY-SA-3.0 and CC-BY-3.0 recordings: share it under CC-BY-SA-3.0 "
                  "and credit the people above (see /usr/share/doc/<package>/copyright)",
    }


def _readme(meta: dict) -> str:
    lines = ["# dfkd demo corpus\n", f"Built by `dfkd corpus demo` (dfkd {meta['dfkd_version']}) with "
             f"settings `{json.dumps(meta['settings'])}`.\n",
             "VoiceBank+DEMAND layout, 16 kHz mono PCM-16. Validation = the training-folder files of "
             f"the speakers {', '.join(meta['valid_speakers'])} (named in {CORPUS_META}).\n",
             "| split | speakers | utterances | minutes |", "|---|---|---|---|"]
    for split, info in meta["splits"].items():
        lines.append(f"| {split} | {', '.join(info['speakers'])} | {info['utterances']} | "
                     f"{info['minutes']:.1f} |")
    lines += ["", f"Speech: {meta['speech']}. Noise types: {', '.join(meta['noise_types'])}. "
              f"SNR uniform in [{meta['snr_db'][0]}, {meta['snr_db'][1]}] dB (global, noisy vs clean). "
              f"Reverberation probability {meta['settings']['reverb_prob']} (synthetic RIRs; the clean "
              f"target keeps the reverberation). Per-file facts: {ITEMS_CSV}.", "", "## Licence", ""]
    for key, value in meta["licence"].items():
        value = "; ".join(f"{k}: {v}" for k, v in value.items()) if isinstance(value, dict) else value
        lines.append(f"- {key}: {value}")
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------- building
def fresh_partial(out: Path) -> Path:
    """An empty hidden folder beside ``out`` to build into (then :func:`swap_into_place`), after
    removing what interrupted builds left there."""
    out.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_partials(out)
    tmp = out.parent / f".{out.name}.partial-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    return tmp


def remove_stale_partials(out: Path) -> None:
    """Delete temp folders of builds whose process is gone (killed hard)."""
    for partial in out.parent.glob(f".{out.name}.partial-*"):
        try:
            os.kill(int(partial.name.rsplit("-", 1)[1]), 0)  # signal 0: existence check only
        except (ValueError, ProcessLookupError):
            shutil.rmtree(partial, ignore_errors=True)
        except PermissionError:
            pass  # alive, another user's


def swap_into_place(tmp: Path, out: Path) -> None:
    """Move the finished corpus ``tmp`` to ``out`` (replacing what is there) with renames only."""
    if out.exists():  # same filesystem: swap with two renames, then drop the old one
        old = out.parent / f".{out.name}.old-{os.getpid()}"
        os.replace(out, old)
        os.replace(tmp, out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, out)


def existing_corpus(out: Path) -> dict | None:
    """The metadata of a complete corpus at ``out``, ``None`` when there is nothing there."""
    if not out.exists():
        return None
    meta = out / CORPUS_META
    if meta.is_file():
        return json.loads(meta.read_text())
    if out.is_dir() and not any(out.iterdir()):
        return None
    raise DfkdError(f"{out}: exists and is not a dfkd corpus (no {CORPUS_META}); refusing to overwrite")


def build_demo_corpus(out: str | os.PathLike, settings: DemoSettings = DemoSettings(), *,
                      force: bool = False, progress: bool = True,
                      log: Callable[[str], None] = print) -> dict:
    """Build the demo corpus at ``out`` and return its metadata (``dfkd_corpus.json``).

    An existing corpus with the same settings is left alone (``meta["built"]`` is False), unless
    it had to fall back to synthetic speech and the real speech is installed now (then it is
    rebuilt); one with other settings raises a :class:`DfkdError` unless ``force`` replaces it.
    """
    settings.check()
    out = Path(out)
    requested = {**asdict(settings), "format": FORMAT_VERSION}
    previous = existing_corpus(out)
    if previous is not None:
        built_with = dict(previous.get("settings", {}))
        speech = built_with.pop("speech", None)
        if built_with == requested:
            if speech == "asterisk" or settings.synthetic or _real_speech_missing():
                log(f"{out}: demo corpus already built with these settings; nothing to do")
                return {**previous, "built": False}
            # It was a fallback build; the real speech it asked for is installed now.
            log(f"{out}: built with fallback synthetic speech; real speech is available now: rebuilding")
        elif not force:
            raise DfkdError(f"{out}: holds a demo corpus built with other settings "
                            f"({previous.get('settings')}); use --force to replace it")
    source = speech_source(settings)
    wanted = {**requested, "speech": source}
    started = time.monotonic()
    tmp = fresh_partial(out)
    try:
        meta = _build_into(tmp, settings, wanted, source, progress)
        swap_into_place(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    seconds = time.monotonic() - started
    log(f"{out}: demo corpus built in {seconds:.1f} s ({source} speech; "
        + ", ".join(f"{s} {i['utterances']} utt / {i['minutes']:.1f} min"
                    for s, i in meta["splits"].items()) + ")")
    return {**meta, "built": True, "build_seconds": seconds}


def _build_into(tmp: Path, settings: DemoSettings, wanted: dict, source: str, progress: bool) -> dict:
    make = _asterisk_utterances if source == "asterisk" else _synthetic_utterances
    splits = {split: make(split, settings, progress) for split in ("train", "valid", "test")}
    total = sum(len(u) for u in splits.values())
    rows: list[dict] = []
    info: dict[str, dict] = {}
    music_origin: dict[str, list[str]] = {}
    with tqdm(total=total, desc="demo corpus", unit="utt", disable=not progress,
              file=sys.stderr) as bar:
        for split, utterances in splits.items():
            pool = [u.audio for u in utterances]
            ltas = noise_lib.long_term_spectrum(pool)
            music_rng = np.random.default_rng([settings.seed, 404, _SPLIT_INDEX[split]])
            music, music_origin[split] = noise_lib.music_tracks(split, source == "synthetic",
                                                                music_rng)
            counters: dict[str, int] = {}
            for index, utterance in enumerate(utterances):
                counters[utterance.speaker] = counters.get(utterance.speaker, 0) + 1
                name = f"{utterance.speaker}_{counters[utterance.speaker]:04d}"
                noisy, clean, facts = _mix(utterance, index, split, settings, pool, ltas, music)
                folder = _FOLDERS[split]
                write_audio(tmp / f"noisy_{folder}" / f"{name}.wav", noisy, SAMPLE_RATE)
                write_audio(tmp / f"clean_{folder}" / f"{name}.wav", clean, SAMPLE_RATE)
                rows.append({"name": name, "split": split, "speaker": utterance.speaker,
                             "language": utterance.language,
                             "seconds": round(len(clean) / SAMPLE_RATE, 3), **facts,
                             "sources": " + ".join(utterance.sources)})
                bar.update(1)
            info[split] = {
                "speakers": sorted({u.speaker for u in utterances}),
                "languages": sorted({u.language for u in utterances}),
                "utterances": len(utterances),
                "minutes": round(sum(len(u.audio) for u in utterances) / SAMPLE_RATE / 60, 2),
            }
    meta = {
        "dfkd_corpus": "demo", "dfkd_version": __version__, "settings": wanted, "speech": source,
        "sample_rate": SAMPLE_RATE, "layout": "voicebank", "valid_speakers": info["valid"]["speakers"],
        "splits": info, "snr_db": [settings.snr_min, settings.snr_max],
        "level_dbfs": list(LEVEL_RANGE_DB), "noise_types": list(noise_lib.NOISE_TYPES),
        "music": music_origin, "licence": _licence_text(source),
    }
    write_corpus_records(tmp, rows, _readme(meta), meta)
    return meta


def write_corpus_records(folder: Path, rows: list[dict], readme: str, meta: dict) -> None:
    """The per-file CSV, the README and the metadata file of a built corpus (the metadata last:
    its presence marks the corpus complete)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_text(folder / ITEMS_CSV, buffer.getvalue())
    write_text(folder / "README.md", readme)
    write_json(folder / CORPUS_META, meta)
