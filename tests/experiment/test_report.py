"""The results side of the comparison: table, teacher lead, paired differences, plots, report.html.

Built on fabricated per-clip scores, so that every number in the table can be checked by hand.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import wave
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from dfkd.experiment import plots
from dfkd.experiment.html import ReportClip, ReportFigure, write_report_html
from dfkd.experiment.tables import to_markdown, write_results
from dfkd.experiment.results import (
    RunRecord, build_results, late_validation_gain, paired_difference, read_per_file_csv,
)

CLIPS = [f"clip{k}" for k in range(6)]
METRICS = ("pesq_wb", "stoi", "estoi", "si_snr", "si_snri", "csig", "cbak", "covl")


def _scores(base_snri: float, seed_shift: float, per_clip: list[float]) -> dict:
    """Scores of six clips: SI-SNRi = base + shift + per-clip offset; other metrics follow it."""
    out = {}
    for name, offset in zip(CLIPS, per_clip):
        snri = base_snri + seed_shift + offset
        out[name] = {"si_snri": snri, "si_snr": snri + 2.0, "pesq_wb": 1.5 + snri / 10,
                     "stoi": 0.8 + snri / 100, "estoi": 0.7 + snri / 100, "csig": 2 + snri / 10,
                     "cbak": 2.2, "covl": 2.1}
    return out


NOISY = {name: {"si_snr": 2.0, "pesq_wb": 1.2, "stoi": 0.75, "estoi": 0.6, "csig": 1.9,
                "cbak": 1.8, "covl": 1.7} for name in CLIPS}
OFFSETS = [0.0, 0.5, -0.5, 1.0, -1.0, 0.2]


def _records() -> list[RunRecord]:
    records = [RunRecord("convtasnet", "teacher", None, _scores(9.0, 0.0, OFFSETS), dict(NOISY),
                         preset="small", params=640_000, macs=2_500_000_000, rtf=0.05, pretrained=True,
                         finished="2025-06-01T10:00:00", machine="hostA (2 CPU threads)")]
    for seed, shift in ((1, -0.1), (2, 0.1)):
        records.append(RunRecord("convtasnet", "none", seed, _scores(6.0, shift, OFFSETS), dict(NOISY),
                                 preset="tiny", params=33_500, macs=120_000_000, rtf=0.01,
                                 finished="2025-06-02T10:00:00", machine="hostA (2 CPU threads)"))
        # dfkd: +0.3 dB on every clip but clip1 (-0.2): 5 of 6 clips better
        dfkd = _scores(6.3, shift, OFFSETS)
        dfkd["clip1"] = {**dfkd["clip1"], "si_snri": 6.0 + shift + OFFSETS[1] - 0.2}
        records.append(RunRecord("convtasnet", "dfkd", seed, dfkd, dict(NOISY), preset="tiny",
                                 params=33_500, macs=120_000_000, rtf=0.01, kd_weight=1.0,
                                 finished="2025-06-02T11:00:00", machine="hostA (2 CPU threads)"))
        records.append(RunRecord("convtasnet", "spectral", seed, _scores(5.9, shift, OFFSETS),
                                 dict(NOISY), preset="tiny", kd_weight=10.0))
    return records


def test_table_means_over_seeds_and_noisy_first():
    results = build_results(_records(), order=["spectral", "dfkd"])
    assert [r.model for r in results.rows] == ["noisy", "teacher", "none", "spectral", "dfkd"]
    none = results.row("convtasnet", "none")
    per_seed = [6.0 - 0.1 + np.mean(OFFSETS), 6.0 + 0.1 + np.mean(OFFSETS)]
    assert none.metrics["si_snri"]["mean"] == pytest.approx(np.mean(per_seed))
    assert none.metrics["si_snri"]["std"] == pytest.approx(np.std(per_seed, ddof=1))
    assert none.seeds == [1, 2]
    assert results.rows[0].metrics["pesq_wb"]["mean"] == pytest.approx(1.2)
    assert "si_snri" not in results.rows[0].metrics  # the input has no improvement over itself
    # dfkd is the best student; the teacher is never "best student"
    assert results.row("convtasnet", "dfkd").best
    assert not results.row("convtasnet", "teacher").best
    assert not results.row("convtasnet", "none").best


def test_teacher_lead_and_paired_differences():
    results = build_results(_records())
    lead = results.teacher_lead["convtasnet"]
    assert lead["lead_db"] == pytest.approx(3.0)
    assert lead["meets_target"] is True
    diff = results.paired["convtasnet"]["dfkd"]["si_snri"]
    expected = np.array([0.3, -0.2, 0.3, 0.3, 0.3, 0.3])
    assert diff["mean"] == pytest.approx(expected.mean())
    assert diff["se"] == pytest.approx(expected.std(ddof=1) / math.sqrt(6))
    assert (diff["better"], diff["worse"], diff["clips"]) == (5, 1, 6)
    assert results.paired["convtasnet"]["spectral"]["si_snri"]["better"] == 0


def test_verdict_line_says_whether_dfkd_beats_the_best_baseline():
    text = to_markdown(build_results(_records(), order=["spectral", "dfkd"]))
    # dfkd - none per clip: [0.3, -0.2, 0.3, 0.3, 0.3, 0.3]; ahead, but one clip against it and
    # five tied ranks leave Wilcoxon at p = 0.06: not significant, so the verdict does not claim it
    p = stats.wilcoxon([0.3, -0.2, 0.3, 0.3, 0.3, 0.3]).pvalue
    assert 0.05 < p < 0.07
    assert ("- convtasnet: DFKD (`dfkd`) is ahead of the best baseline (no KD (`none`)) by "
            f"+0.22 ± 0.08 (5/6; p={p:.2f}; seeds +0.22 ± 0.00, 2/2 better) dB SI-SNRi, which is NOT "
            "significant; pick no KD (`none`) (simpler) or either.") in text
    # a baseline that does better: the verdict says so, names it and compares against it
    records = [r for r in _records() if r.model != "spectral"]
    for seed, shift in ((1, -0.1), (2, 0.1)):
        records.append(RunRecord("convtasnet", "sisnr", seed, _scores(6.5, shift, OFFSETS), dict(NOISY)))
    results = build_results(records)
    assert results.best_baseline == {"convtasnet": "sisnr"}
    text = to_markdown(results)
    # dfkd - sisnr per clip: [-0.2, -0.7, -0.2, -0.2, -0.2, -0.2]: all six worse
    assert "convtasnet: DFKD does NOT beat the best baseline (`sisnr`): its best variant `dfkd` is -0.28" in text
    assert text.rstrip().endswith(".") and "pick `sisnr`." in text


def _significant_records() -> list[RunRecord]:
    """none, output and dfkd over three seeds; dfkd beats output on every clip by distinct amounts."""
    gains = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]
    records = []
    for seed, shift in ((1, -0.1), (2, 0.0), (3, 0.1)):
        records.append(RunRecord("convtasnet", "none", seed, _scores(6.0, shift, OFFSETS)))
        records.append(RunRecord("convtasnet", "output", seed, _scores(6.2, shift, OFFSETS)))
        records.append(RunRecord("convtasnet", "dfkd-rolloff", seed,
                                 _scores(6.2, shift, [o + g for o, g in zip(OFFSETS, gains)])))
    return records


def test_paired_differences_against_the_best_baseline_with_tests_over_clips_and_seeds():
    # the row named dfkd-rolloff is DFKD by its method; "output" is then the best baseline
    results = build_results(_significant_records(), methods={"none": "none", "output": "output",
                                                             "dfkd-rolloff": "dfkd"})
    assert results.best_baseline == {"convtasnet": "output"}
    diff = results.paired_best["convtasnet"]["dfkd-rolloff"]["si_snri"]
    gains = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6])
    assert diff["mean"] == pytest.approx(0.35)
    assert diff["se"] == pytest.approx(gains.std(ddof=1) / math.sqrt(6))
    # all six clips better, no ties: exact two-sided signed-rank p = 2 / 2**6
    assert diff["p_wilcoxon"] == pytest.approx(2 / 64)
    assert diff["p_t"] == pytest.approx(stats.ttest_rel(6.2 + gains, np.full(6, 6.2)).pvalue)
    # same seed, same shift: every seed gains the mean of the gains
    assert diff["seeds"]["seeds"] == [1, 2, 3] and diff["seeds"]["better"] == 3
    assert diff["seeds"]["per_seed"] == pytest.approx([0.35] * 3)
    # none against output: a constant -0.2 on every clip
    worse = results.paired_best["convtasnet"]["none"]["si_snri"]
    assert worse["mean"] == pytest.approx(-0.2) and worse["p_t"] == 0.0 and worse["better"] == 0
    # against none, output and dfkd are still there with their tests
    assert results.paired["convtasnet"]["output"]["si_snri"]["mean"] == pytest.approx(0.2)
    text = to_markdown(results)
    # a constant shift has a standard error of rounding noise: the metric's own decimals
    assert "| convtasnet | output | +0.20 ± 0.00 (6/6; p=0.03; seeds +0.20 ± 0.00, 3/3 better)" in text
    assert "## Paired per-clip differences against the best baseline" in text
    assert ("| convtasnet | dfkd-rolloff | +0.35 ± 0.08 (6/6; p=0.03; seeds +0.35 ± 0.00, 3/3 better)"
            in text)
    assert ("- convtasnet: DFKD (`dfkd-rolloff`) beats the best baseline (`output`) by +0.35 ± 0.08 "
            "(6/6; p=0.03; seeds +0.35 ± 0.00, 3/3 better) dB SI-SNRi; pick `dfkd-rolloff`.") in text
    saved = json.loads(json.dumps(results.to_dict()))
    assert saved["best_baseline"] == {"convtasnet": "output"}
    assert saved["paired_vs_best_baseline"]["convtasnet"]["dfkd-rolloff"]["si_snri"]["p_wilcoxon"] == \
        pytest.approx(2 / 64)


def test_when_an_adapter_ablation_wins_the_verdict_also_says_how_the_papers_adapter_did():
    records = _significant_records()
    for seed, shift in ((1, -0.1), (2, 0.0), (3, 0.1)):  # the paper's rule: 0.1 dB below output
        records.append(RunRecord("convtasnet", "dfkd", seed, _scores(6.1, shift, OFFSETS)))
    results = build_results(records, methods={"none": "none", "output": "output",
                                              "dfkd-rolloff": "dfkd", "dfkd": "dfkd"})
    text = to_markdown(results)
    assert ("- convtasnet: DFKD (`dfkd-rolloff`) beats the best baseline (`output`) by +0.35 ± 0.08 "
            "(6/6; p=0.03; seeds +0.35 ± 0.00, 3/3 better) dB SI-SNRi (the paper's adapter, `dfkd`: "
            "-0.10 ± 0.00 (0/6; p=0.03; seeds -0.10 ± 0.00, 0/3 better) dB); pick `dfkd-rolloff`."
            ) in text


def test_significance_edge_cases_do_not_crash():
    from dfkd.experiment.significance import is_significant_gain, paired_t_p, seed_paired, wilcoxon_p

    assert wilcoxon_p([0.0, 0.0, 0.0]) == 1.0 and paired_t_p([0.0, 0.0]) == 1.0
    assert math.isnan(wilcoxon_p([0.4])) and math.isnan(paired_t_p([]))
    assert wilcoxon_p([1.0, -2.0, 3.0, 4.0]) == pytest.approx(stats.wilcoxon([1.0, -2.0, 3.0, 4.0]).pvalue)
    # a pretrained teacher has no seed in common with a student: no seed spread, no crash
    teacher = [RunRecord("a", "teacher", None, {"c": {"si_snri": 1.0}})]
    student = [RunRecord("a", "none", 1, {"c": {"si_snri": 0.5}})]
    spread = seed_paired(teacher, student, "si_snri")
    assert spread["seeds"] == [] and math.isnan(spread["mean"])
    # one seed pair against it out of three: the clip test alone does not make a winner
    entry = {"mean": 0.1, "clips": 60, "p_wilcoxon": 0.001, "seeds": {"seeds": [1, 2, 3], "better": 1}}
    assert not is_significant_gain(entry)
    assert is_significant_gain({**entry, "seeds": {"seeds": [1, 2, 3], "better": 2}})
    one = build_results([RunRecord("a", "none", 1, {"c": {"si_snri": 0.5}}),
                         RunRecord("a", "dfkd", 1, {"c": {"si_snri": 0.7}})])
    assert "p=–" in to_markdown(one)


def test_low_teacher_lead_is_flagged():
    records = [r for r in _records() if r.model != "teacher"]
    records.append(RunRecord("convtasnet", "teacher", 0, _scores(6.5, 0.0, OFFSETS), dict(NOISY)))
    results = build_results(records)
    text = to_markdown(results)
    assert results.teacher_lead["convtasnet"]["meets_target"] is False
    assert "BELOW the 2 dB target" in text
    assert "+0.50" in text


def test_small_differences_get_the_decimals_their_standard_error_needs():
    from dfkd.experiment.tables import format_difference

    pesq = {"mean": 0.0041, "se": 0.0017, "better": 40, "clips": 69}
    assert format_difference(pesq, "pesq_wb") == "+0.004 ± 0.002 (40/69)"
    snri = {"mean": 0.31, "se": 0.07, "better": 50, "clips": 69}
    assert format_difference(snri, "si_snri") == "+0.31 ± 0.07 (50/69)"
    tiny = {"mean": 1e-7, "se": 1e-8, "better": 1, "clips": 2}
    assert format_difference(tiny, "pesq_wb") == "+0.0000 ± 0.0000 (1/2)"


def test_late_validation_gain_reads_the_last_fifth_of_the_curve():
    history = {"valid": [{"step": s, "si_snr": v} for s, v in
                         ((500, 7.0), (1000, 8.0), (1500, 8.5), (2000, 8.6), (2500, 8.65))]}
    # last 20 % of 2500 steps: from the last validation at or before step 2000
    assert late_validation_gain(history) == pytest.approx(0.05)
    assert late_validation_gain({"valid": [{"step": 100, "si_snr": 1.0}]}) is None
    assert late_validation_gain({}) is None


def test_lead_against_an_unconverged_none_student_says_so():
    records = _records()
    for record, gain in zip([r for r in records if r.model == "none"], (0.04, 0.6)):
        record.late_gain_db = gain
    lead = build_results(records).teacher_lead["convtasnet"]
    assert lead["meets_target"] is True and lead["none_converged"] is False
    assert lead["none_late_gain_db"] == pytest.approx(0.6)
    text = to_markdown(build_results(records))
    assert "meets the 2 dB target only against a `none` student still improving (+0.60 dB" in text
    for record in records:
        if record.model == "none":
            record.late_gain_db = 0.02
    assert "(`none` converged: +0.02 dB over its last 20 % of steps)" in to_markdown(build_results(records))


def test_paired_difference_single_clip_has_unknown_error():
    diff = paired_difference({"a": 1.0}, {"a": 0.5, "b": 0.0})
    assert diff["clips"] == 1 and diff["mean"] == 0.5 and math.isnan(diff["se"])


def test_written_files(tmp_path):
    sweeps = {"convtasnet": {"dfkd": {"chosen": 1.0, "candidates": {0.3: 5.1, 1.0: 5.4, 3.0: 4.9},
                                      "grad_ratio": {"0.3": 0.05, "1.0": 0.1734, "3.0": 0.6}}}}
    results = build_results(_records(), sweeps=sweeps)
    write_results(results, tmp_path)
    md = (tmp_path / "results.md").read_text()
    assert "| 1 | 0.173 |" in md  # the KD/task gradient ratio at the chosen lambda (JSON keys)
    assert md.index("| – | noisy") < md.index("| convtasnet | teacher")
    assert "dfkd ★" in md
    assert "teacher leads `none` by +3.00" in md
    assert "**1: 5.40**" in md
    assert "student seeds 1, 2" in md and "2025-06-01 to 2025-06-02" in md and "hostA" in md
    assert "640 k" in md and "2.50 G" in md
    data = json.loads((tmp_path / "results.json").read_text())
    assert data["kd_weight_sweeps"]["convtasnet"]["dfkd"]["chosen"] == 1.0
    assert data["paired_vs_none"]["convtasnet"]["dfkd"]["si_snri"]["better"] == 5
    lines = (tmp_path / "results.csv").read_text().splitlines()
    assert lines[0].startswith("arch,model,preset,seeds,kd_weight,best_student,pesq_wb_mean")
    assert len(lines) == 1 + 5


def test_read_per_file_csv_roundtrip(tmp_path):
    path = tmp_path / "per_file.csv"
    path.write_text("name,si_snr,pesq_wb,noisy_si_snr\na,1.5,2.0,0.5\nb,2.5,,0.25\n")
    scores, noisy = read_per_file_csv(path)
    assert scores == {"a": {"si_snr": 1.5, "pesq_wb": 2.0}, "b": {"si_snr": 2.5}}
    assert noisy == {"a": {"si_snr": 0.5}, "b": {"si_snr": 0.25}}


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def _write_wav(path: Path, audio: np.ndarray) -> None:
    with wave.open(str(path), "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(16000)
        handle.writeframes((np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes())


def _build_report(out: Path) -> Path:
    sweeps = {"convtasnet": {"dfkd": {"chosen": 1.0, "candidates": {1.0: 5.4, 3.0: 4.9},
                                      "grad_ratio": {"1.0": 0.0419}}}}
    results = build_results(_records(), sweeps=sweeps)
    write_results(results, out)
    (out / "plots").mkdir()
    (out / "audio").mkdir()
    figures = [ReportFigure("Metric deltas", "plots/deltas.png", "paired differences")]
    assert plots.plot_deltas(results, out / "plots" / "deltas.png") is not None
    counts = np.zeros(257)
    counts[[3, 4, 4, 5, 6]] = [10, 40, 40, 5, 5]
    rolloff = np.zeros(257)
    rolloff[10:60] = 3
    assert plots.plot_crossover({"convtasnet": {"cummax-slope": counts, "energy-rolloff:0.9": rolloff}},
                                out / "plots" / "crossover.png") is not None
    figures.append(ReportFigure("Crossover", "plots/crossover.png"))
    rng = np.random.default_rng(0)
    t = np.arange(16000) / 16000
    clean = 0.3 * np.sin(2 * np.pi * 220 * t) * (t < 0.6)
    waves = [("noisy", clean + 0.05 * rng.standard_normal(t.size)), ("clean", clean),
             ("student none", clean + 0.02 * rng.standard_normal(t.size))]
    plots.plot_spectrograms("clip0", waves, out / "plots" / "clip0.png")
    audio = []
    for label, wave_ in waves:
        _write_wav(out / "audio" / f"clip0_{label.replace(' ', '_')}.wav", wave_)
        audio.append((label, f"audio/clip0_{label.replace(' ', '_')}.wav"))
    clips = [ReportClip("clip0", "plots/clip0.png", audio)]
    return write_report_html(results, out, figures, clips)


def test_plots_are_nonblank_pngs(tmp_path):
    _build_report(tmp_path)
    for name in ("deltas", "crossover", "clip0"):
        path = tmp_path / "plots" / f"{name}.png"
        width, height = _png_size(path)
        assert width > 300 and height > 200
        assert path.stat().st_size > 10_000  # text, bars and a spectrogram, not an empty canvas


def test_report_html_is_self_contained(tmp_path):
    page = _build_report(tmp_path).read_text()
    assert page.startswith("<!DOCTYPE html>")
    assert "http://" not in page and "https://" not in page  # no external resource
    assert page.count("<audio") == 3 and 'src="audio/clip0_noisy.wav"' in page
    assert "dfkd ★" in page and "teacher leads" in page
    assert "<td>1</td><td>0.042</td>" in page  # the sweep's KD/task gradient ratio at the chosen λ


def test_report_html_refuses_missing_files(tmp_path):
    results = build_results(_records())
    with pytest.raises(FileNotFoundError, match="plots/missing.png"):
        write_report_html(results, tmp_path, [ReportFigure("x", "plots/missing.png")])


CHROMIUM = shutil.which("chromium") or (Path("/usr/bin/chromium") if Path("/usr/bin/chromium").exists() else None)


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's `chromium` is not installed "
                    "(apt-get install chromium) so report.html cannot be rendered headless")
def test_report_renders_in_headless_chromium(tmp_path):
    page = _build_report(tmp_path / "report")
    shot = tmp_path / "shot.png"
    command = [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
               "--no-first-run", "--disable-background-networking", "--disable-component-update",
               "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}",
               "--window-size=1280,2000", page.resolve().as_uri()]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    assert _png_size(shot) == (1280, 2000)
    from matplotlib.image import imread

    pixels = imread(str(shot))[..., :3]
    # a rendered table, text and figures: many distinct colours, not a blank white page
    assert pixels.std() > 0.05
    dark = (pixels.mean(axis=-1) < 0.5).mean()
    assert 0.005 < dark < 0.9
