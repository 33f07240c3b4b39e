"""`dfkd corpus`: build the offline demo corpus or the held-out test corpus, or check any corpus.

    dfkd corpus demo --out data/demo_corpus [--minutes 30] [--seed 0] [--snr-min -5 --snr-max 15]
                     [--reverb-prob 0] [--synthetic] [--force]
    dfkd corpus heldout --out data/heldout_corpus [--minutes 5] [--seed 0] [--snr-min -10 --snr-max 20]
                        [--reverb-prob 0.25] [--force]
    dfkd corpus mix --out ROOT --clean DIR --noise DIR [--rir DIR] [--snr-min -5 --snr-max 20]
                    [--level-min -35 --level-max -15] [--rir-prob 0.5] [--valid-fraction 0.1]
                    [--test-fraction 0.1] [--seed 0]
    dfkd corpus check DATA [--split train valid test] [--sample-rate 16000]
"""

from __future__ import annotations

import argparse
import sys

from ..errors import DfkdError


def _add_range(parser: argparse.ArgumentParser, name: str, what: str, unit: str,
               low: float, high: float) -> None:
    """``--NAME-min`` / ``--NAME-max``: the range a mixing setting is drawn from."""
    parser.add_argument(f"--{name}-min", type=float, default=low,
                        help=f"lowest {what} in {unit} (default: %(default)s)")
    parser.add_argument(f"--{name}-max", type=float, default=high,
                        help=f"highest {what} in {unit} (default: %(default)s)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION")
    demo = sub.add_parser("demo", help="build the offline demo corpus (real Asterisk speech or "
                                       "synthetic speech, offline noise)")
    demo.add_argument("--out", default="data/demo_corpus", help="corpus folder (default: %(default)s)")
    demo.add_argument("--minutes", type=float, default=30.0,
                      help="minutes of training audio (default: %(default)s)")
    demo.add_argument("--valid-minutes", type=float, default=None,
                      help="minutes of validation audio (default: minutes / 6)")
    demo.add_argument("--test-minutes", type=float, default=None,
                      help="minutes of test audio (default: minutes / 6)")
    demo.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    _add_range(demo, "snr", "SNR", "dB", -5.0, 15.0)
    demo.add_argument("--reverb-prob", type=float, default=0.0,
                      help="probability that an utterance is reverberated (default: %(default)s)")
    demo.add_argument("--synthetic", action="store_true",
                      help="use synthetic speech even when the Asterisk sound packages are installed")
    demo.add_argument("--force", action="store_true",
                      help="replace an existing demo corpus built with other settings")
    demo.add_argument("--quiet", action="store_true", help="no progress bar")

    held = sub.add_parser("heldout", help="build a test-only corpus of speakers and noise kinds "
                                          "that the demo corpus and the teachers never saw")
    held.add_argument("--out", default="data/heldout_corpus", help="corpus folder (default: %(default)s)")
    held.add_argument("--minutes", type=float, default=5.0,
                      help="minutes of test audio (default: %(default)s)")
    held.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    _add_range(held, "snr", "SNR", "dB", -10.0, 20.0)
    held.add_argument("--reverb-prob", type=float, default=0.25,
                      help="probability that an utterance is reverberated (default: %(default)s)")
    held.add_argument("--force", action="store_true",
                      help="replace an existing corpus built with other settings")
    held.add_argument("--quiet", action="store_true", help="no progress bar")

    mixp = sub.add_parser("mix", help="make your own folders of clean speech and noise (and impulse "
                                      "responses) a corpus mixed on the fly (writes dfkd_corpus.json)")
    mixp.add_argument("--out", required=True, help="the corpus folder that --data then takes")
    mixp.add_argument("--clean", required=True, help="folder of clean speech (searched recursively)")
    mixp.add_argument("--noise", required=True, help="folder of noise files")
    mixp.add_argument("--rir", default=None, help="folder of room impulse responses (default: none)")
    _add_range(mixp, "snr", "SNR", "dB", -5.0, 20.0)
    _add_range(mixp, "level", "speech level", "dBFS", -35.0, -15.0)
    mixp.add_argument("--rir-prob", type=float, default=0.5,
                      help="share of reverberant mixtures when --rir is given (default: %(default)s)")
    mixp.add_argument("--valid-fraction", type=float, default=0.1,
                      help="share of speakers (and noises) held out for validation (default: %(default)s)")
    mixp.add_argument("--test-fraction", type=float, default=0.1,
                      help="share held out for the test set (default: %(default)s)")
    mixp.add_argument("--seed", type=int, default=0,
                      help="seed of the fixed validation and test mixtures (default: %(default)s)")

    check = sub.add_parser("check", help="read every file of a corpus and list all problems")
    check.add_argument("data", help="corpus folder or manifest (.csv/.jsonl)")
    check.add_argument("--split", nargs="+", default=None, choices=("train", "valid", "test"),
                       help="splits to check (default: every split the corpus has)")
    check.add_argument("--sample-rate", type=int, default=16000, help="rate lengths are compared at")
    check.add_argument("--quiet", action="store_true", help="no progress bar")


def _demo(args: argparse.Namespace) -> int:
    from ..data.demo.build import DemoSettings, build_demo_corpus

    settings = DemoSettings(
        minutes=args.minutes, valid_minutes=args.valid_minutes, test_minutes=args.test_minutes,
        seed=args.seed, snr_min=args.snr_min, snr_max=args.snr_max,
        reverb_prob=args.reverb_prob, synthetic=args.synthetic,
    )
    build_demo_corpus(args.out, settings, force=args.force, progress=not args.quiet)
    return 0


def _heldout(args: argparse.Namespace) -> int:
    from ..data.demo.heldout import HeldoutSettings, build_heldout_corpus

    settings = HeldoutSettings(minutes=args.minutes, seed=args.seed, snr_min=args.snr_min,
                               snr_max=args.snr_max, reverb_prob=args.reverb_prob)
    build_heldout_corpus(args.out, settings, force=args.force, progress=not args.quiet)
    return 0


def _mix(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..data.layouts import detect_layout
    from ..data.mixing import META, mix_corpus, mix_spec, source_files

    # a dfkd_corpus.json in a corpus of paired files (or of another kind) would hide that corpus
    if (Path(args.out) / META).is_file() and mix_spec(args.out) is None:
        raise DfkdError(f"{Path(args.out) / META}: the file of another corpus; give --out a new folder")
    if Path(args.out).is_dir() and not (Path(args.out) / META).is_file():
        try:
            layout = detect_layout(args.out)
        except DfkdError:  # not a corpus yet: fine
            layout = None
        if layout in ("voicebank", "folders", "manifest"):
            raise DfkdError(f"{args.out}: already a {layout} corpus of paired files; give --out a new folder")
    for option, folder in (("--clean", args.clean), ("--noise", args.noise), ("--rir", args.rir)):
        if folder is not None and not Path(folder).is_dir():
            raise DfkdError(f"{folder}: {option} must be a folder")
    settings = {"snr_range": (args.snr_min, args.snr_max), "level_range": (args.level_min, args.level_max),
                "rir_prob": args.rir_prob, "valid_fraction": args.valid_fraction,
                "test_fraction": args.test_fraction, "seed": args.seed}
    folders = {"clean": args.clean, "noise": args.noise, "rir": args.rir}
    # every split checked before anything is written (mix_corpus checks only the settings)
    spec = mix_spec(args.out, {"layout": "clean+noise", **settings,
                               **{k: None if v is None else str(Path(v).absolute())
                                  for k, v in folders.items()}}).check()
    counts = {split: source_files(spec, split) for split in ("train", "valid", "test")}
    mix_corpus(args.out, **folders, **settings)
    splits = ", ".join(f"{split} {len(c)} clean / {len(n)} noise" for split, (c, n, _) in counts.items())
    rirs = len(counts["train"][2])
    print(f"{args.out}: clean+noise corpus ({splits}; {rirs} impulse response(s)"
          f"{f', {args.rir_prob:g} of the mixtures reverberant' if rirs else ''}); "
          f"use it as --data {args.out}")
    return 0


def _check(args: argparse.Namespace) -> int:
    from ..data.datasets import scan_pairs
    from ..data.layouts import corpus_pairs, detect_layout, split_source

    layout = detect_layout(args.data)
    splits = args.split or ["train", "valid", "test"]
    problems: list[str] = []
    checked = 0
    for split in splits:
        try:
            pairs = corpus_pairs(args.data, split, strict=False)
        except DfkdError as err:
            if args.split:  # asked for explicitly: its absence is a problem
                problems.append(str(err))
            else:
                print(f"{split}: skipped ({err})")
            continue
        found = scan_pairs(pairs, args.sample_rate, progress=not args.quiet)
        checked += len(pairs)
        source = split_source(args.data, split)
        print(f"{split}: {len(pairs)} pairs, {len(found)} problem(s)"
              + (f" ({source})" if source else ""))
        problems += found
    for problem in problems:
        print(f"  {problem}", file=sys.stderr)
    print(f"{args.data}: {layout} layout, {checked} pairs checked, {len(problems)} problem(s)")
    return 1 if problems else 0


def run(args: argparse.Namespace) -> int:
    if args.action == "demo":
        return _demo(args)
    if args.action == "heldout":
        return _heldout(args)
    if args.action == "check":
        return _check(args)
    if args.action == "mix":
        return _mix(args)
    raise DfkdError("choose an action: `dfkd corpus demo`, `dfkd corpus heldout`, `dfkd corpus mix` "
                    "or `dfkd corpus check DATA`")
