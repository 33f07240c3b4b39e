"""Write the mixing sources that the pretrained demo teachers are trained on.

The demo teachers must know more than their students (method.md asks for a >= 2 dB SI-SNRi lead), so
they are trained long, on on-the-fly mixtures (the DNS Challenge recipe, :class:`dfkd.data.dns.
DNSMixtureDataset`) of ALL the recorded speech of the demo corpus's training speakers (Allison:
en + es, Carlo: it; about 75 minutes, where the demo corpus's fixed training split holds 30) with
the demo corpus's training noises. The validation speaker (ru) and the test speaker (fr) are never
read, so the teachers stay speaker-disjoint from the demo corpus's valid and test splits.

Writes a DNS-style folder ``OUT/clean/*.wav`` + ``OUT/noise/*.wav`` (16 kHz mono PCM-16) that
``dfkd train --data OUT`` reads as on-the-fly training mixtures.

``--varied`` (the stronger teachers of issue #10, which generalised poorly: +1.3 to +3.1 dB on
speakers and noise kinds they never heard against +9.5 dB in domain) widens what the mixtures
cover without touching a speaker or a noise kind of the demo's validation/test splits or of
`dfkd corpus heldout`: twice the noise clips per type, synthetic room impulse responses in
``OUT/rir/`` (a third of the mixtures reverberant), and a ``dfkd_corpus.json`` that makes the folder a
``clean+noise`` corpus (:mod:`dfkd.data.mixing`) with a wider level (-45..-10 dBFS) and SNR
(-5..25 dB) spread than the DNS defaults.

Usage::

    python pretrained/make_teacher_sources.py --out data/teacher_sources \
        [--sounds /usr/share/asterisk/sounds] [--moh /usr/share/asterisk/moh] [--seed 0] [--varied]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from dfkd.data.demo import noise as noise_lib
from dfkd.data.demo import speech as speech_lib
from dfkd.audio import write_audio
from dfkd.data.mixing import mix_corpus

SAMPLE_RATE = 16000
NOISE_CLIPS_PER_TYPE = 8
NOISE_CLIP_SECONDS = 20.0
# --varied: the mixing settings of the stronger teachers' corpus (see the module docstring)
VARIED = {"snr_range": (-5.0, 25.0), "level_range": (-45.0, -10.0), "rir_prob": 1 / 3,
          "valid_fraction": 0.05, "test_fraction": 0.05, "valid_items": 64, "seed": 0}
VARIED_NOISE_CLIPS_PER_TYPE = 16
VARIED_RIRS = 64


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--sounds", type=Path, default=speech_lib.ASTERISK_SOUNDS)
    parser.add_argument("--moh", type=Path, default=noise_lib.MOH_DIR)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--varied", action="store_true",
                        help="more noise clips, room reverberation, wider level and SNR spread")
    args = parser.parse_args(argv)
    # The Debian paths are module constants; point them at the given folders (e.g. a copy).
    speech_lib.ASTERISK_SOUNDS = args.sounds
    noise_lib.MOH_DIR = args.moh

    speakers = {s.speaker: s for s in speech_lib.ASTERISK_SPEAKERS}
    pool: list[np.ndarray] = []
    clean_dir = args.out / "clean"
    for name in speech_lib.ASTERISK_SPLITS["train"]:
        for lang in speakers[name].sources:
            prompts = speech_lib.asterisk_prompts(lang)
            if not prompts:
                print(f"error: no G.722 prompts under {args.sounds / lang}", file=sys.stderr)
                return 1
            rng = np.random.default_rng([args.seed, 11, sum(map(ord, lang))])
            for k, (_, audio) in enumerate(speech_lib.concatenate(prompts, rng)):
                write_audio(clean_dir / f"{name}_{lang}_{k:04d}.wav", audio, SAMPLE_RATE)
                pool.append(audio)
    minutes = sum(len(a) for a in pool) / SAMPLE_RATE / 60
    print(f"clean: {len(pool)} utterances, {minutes:.1f} min -> {clean_dir}")

    rng = np.random.default_rng([args.seed, 12])
    ltas = noise_lib.long_term_spectrum(pool)
    music, music_names = noise_lib.music_tracks("train", synthetic=False, rng=rng)
    n = int(NOISE_CLIP_SECONDS * SAMPLE_RATE)
    clips = VARIED_NOISE_CLIPS_PER_TYPE if args.varied else NOISE_CLIPS_PER_TYPE
    for kind in noise_lib.NOISE_TYPES:
        for k in range(clips):
            noise = noise_lib.make_noise(kind, rng, n, pool=pool, exclude=(), ltas=ltas, music=music)
            noise = 0.1 * noise / (np.std(noise) + 1e-9)  # -20 dBFS: the mixer rescales to the SNR
            write_audio(args.out / "noise" / f"{kind}_{k:02d}.wav", np.clip(noise, -1, 1), SAMPLE_RATE)
    print(f"noise: {len(noise_lib.NOISE_TYPES)} types x {clips} clips "
          f"(music: {', '.join(music_names)})")
    if args.varied:
        rng = np.random.default_rng([args.seed, 13])
        for k in range(VARIED_RIRS):
            rir, _ = noise_lib.synthetic_rir(rng)
            write_audio(args.out / "rir" / f"rir_{k:02d}.wav", rir / np.max(np.abs(rir)), SAMPLE_RATE)
        mix_corpus(args.out, rir=args.out / "rir", **VARIED)
        print(f"rir: {VARIED_RIRS} synthetic rooms; {args.out / 'dfkd_corpus.json'}: a clean+noise corpus "
              f"(SNR {VARIED['snr_range']} dB, level {VARIED['level_range']} dBFS, "
              f"reverberant share {VARIED['rir_prob']:.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
