"""The teacher's lead over a converged student, paired per clip (issue #10; docs/method.md asks for 2 dB).

Reads two ``per_file.csv`` files of ``dfkd evaluate`` on the same split (the teacher's and the
student's) and prints, for one metric, both means, the paired per-clip difference with its
standard error, the clips where the teacher is better and the Wilcoxon signed-rank p-value::

    python pretrained/teacher_lead.py pretrained/convtasnet_small/test/per_file.csv \
        records/lead_students/nano-convtasnet/test/per_file.csv [--metric si_snri] [--target 2]

Exit status 0 whatever the lead; a file without the metric, or two files without a common clip,
is a one-line error and status 2.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from dfkd.errors import DfkdError
from dfkd.experiment.results import read_per_file_csv
from dfkd.experiment.significance import wilcoxon_p


def read_scores(path: Path, metric: str) -> dict[str, float]:
    """``clip name -> score`` of ``metric`` (clips without a finite score are skipped)."""
    try:
        clips, _ = read_per_file_csv(path)
    except KeyError:  # no `name` column
        clips = {}
    scores = {name: values[metric] for name, values in clips.items()
              if metric in values and math.isfinite(values[metric])}
    if not any(metric in values for values in clips.values()):
        raise ValueError(f"{path}: no `name` and `{metric}` columns (a per_file.csv of dfkd evaluate?)")
    return scores


def lead(teacher: dict[str, float], student: dict[str, float]) -> dict[str, float]:
    """Means over the common clips, the paired difference's mean and standard error, clips better, p."""
    names = sorted(set(teacher) & set(student))
    if not names:
        raise ValueError("the two files share no clip")
    diffs = [teacher[n] - student[n] for n in names]
    mean = sum(diffs) / len(diffs)
    spread = math.sqrt(sum((d - mean) ** 2 for d in diffs) / (len(diffs) - 1)) if len(diffs) > 1 else math.nan
    return {"clips": len(names), "teacher": sum(teacher[n] for n in names) / len(names),
            "student": sum(student[n] for n in names) / len(names), "lead": mean,
            "stderr": spread / math.sqrt(len(diffs)), "better": sum(d > 0 for d in diffs),
            "p_wilcoxon": wilcoxon_p(diffs)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("teacher", type=Path, help="the teacher's per_file.csv")
    parser.add_argument("student", type=Path, help="the student's per_file.csv")
    parser.add_argument("--metric", default="si_snri")
    parser.add_argument("--target", type=float, default=2.0, help="the lead distillation needs (dB)")
    args = parser.parse_args(argv)
    try:
        result = lead(read_scores(args.teacher, args.metric), read_scores(args.student, args.metric))
    except (DfkdError, OSError, ValueError) as err:
        print(f"teacher_lead: {err}", file=sys.stderr)
        return 2
    verdict = "met" if result["lead"] >= args.target else "not met"
    print(f"{args.metric} over {result['clips']} clips: teacher {result['teacher']:.2f}, student "
          f"{result['student']:.2f}, lead {result['lead']:+.2f} ± {result['stderr']:.2f} "
          f"({result['better']}/{result['clips']} clips; p={result['p_wilcoxon']:.2g}); "
          f"the {args.target:g} dB target: {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
