"""benchmarks/paired_rows.py: any two grid rows paired clip by clip, as the report pairs them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "paired_rows.py"


def _run_folder(row: Path, name: str, seed: int, scores: list[float] | None) -> None:
    run = row / name
    run.mkdir(parents=True)
    (run / "trained.json").write_text(json.dumps({"job": {"seed": seed}}))
    if scores is None:  # a sweep run: scored on the validation split only
        (run / "eval-valid-aaaa").mkdir()
        return
    (run / "eval-test-bbbb").mkdir()
    lines = ["name,si_snri,noisy_si_snr"] + [f"clip{i},{v},1.0" for i, v in enumerate(scores)]
    (run / "eval-test-bbbb" / "per_file.csv").write_text("\n".join(lines) + "\n")


def _script(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True,
                          env={"PYTHONPATH": str(ROOT / "src")}, check=False)


def test_two_rows_are_paired_on_their_seed_averaged_clip_scores(tmp_path):
    arch = tmp_path / "runs" / "convtasnet"
    # seed-averaged clips: a = [2, 4, 6], b = [1, 2, 3] -> differences 1, 2, 3 (mean 2, se 0.58)
    _run_folder(arch / "a", "seed1", 1, [1.0, 3.0, 5.0])
    _run_folder(arch / "a", "seed2", 2, [3.0, 5.0, 7.0])
    _run_folder(arch / "a", "sweep", 1, None)
    _run_folder(arch / "b", "seed1", 1, [1.0, 2.0, 3.0])
    _run_folder(arch / "b", "seed2", 2, [1.0, 2.0, 3.0])
    done = _script(str(arch), "a:b")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("a - b (test, si_snri, seeds 2/2): +2.00 ± 0.58 (3/3; p=0.25;")
    assert "seeds +2.00 ± 1.41, 2/2 better)" in done.stdout


def test_a_missing_row_or_a_malformed_pair_is_one_line_and_fails(tmp_path):
    arch = tmp_path / "runs" / "convtasnet"
    _run_folder(arch / "a", "seed1", 1, [1.0, 2.0])
    missing = _script(str(arch), "a:nope")
    assert missing.returncode == 1
    assert missing.stderr.strip() == f"paired_rows: {arch / 'nope'}: no such row folder"
    malformed = _script(str(arch), "a")
    assert malformed.stderr.strip() == "paired_rows: a: expected MODEL:BASELINE"
    unscored = _script(str(arch), "a:a", "--split", "heldout")
    assert unscored.stderr.strip() == f"paired_rows: {arch / 'a'}: no run scored on the heldout split"
