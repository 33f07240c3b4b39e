"""`dfkd corpus`: build the offline demo corpus or the held-out test corpus, or check any corpus.

    dfkd corpus demo --out data/demo_corpus [--minutes 30] [--seed 0] [--snr-min -5 --snr-max 15]
                     [--reverb-prob 0] [--synthetic] [--force]
    dfkd corpus heldout --out data/heldout_corpus [--minutes 5] [--seed 0] [--snr-min -10 --snr-max 20]
                        [--reverb-prob 0.25] [--force]
    dfkd corpus check DATA [--split train valid test] [--sample-rate 16000]
"""

from __future__ import annotations

import argparse
import sys

from ..errors import DfkdError


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
    demo.add_argument("--snr-min", type=float, default=-5.0, help="lowest SNR in dB (default: %(default)s)")
    demo.add_argument("--snr-max", type=float, default=15.0, help="highest SNR in dB (default: %(default)s)")
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
    held.add_argument("--snr-min", type=float, default=-10.0,
                      help="lowest SNR in dB (default: %(default)s)")
    held.add_argument("--snr-max", type=float, default=20.0,
                      help="highest SNR in dB (default: %(default)s)")
    held.add_argument("--reverb-prob", type=float, default=0.25,
                      help="probability that an utterance is reverberated (default: %(default)s)")
    held.add_argument("--force", action="store_true",
                      help="replace an existing corpus built with other settings")
    held.add_argument("--quiet", action="store_true", help="no progress bar")

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
    raise DfkdError("choose an action: `dfkd corpus demo`, `dfkd corpus heldout` or "
                    "`dfkd corpus check DATA`")
