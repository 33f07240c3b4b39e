"""What the report adds to the table: model sizes, the crossover histogram, listening examples.

* :func:`complexity`: parameters, MACs per second of audio and CPU real-time factor of each model
  (:mod:`dfkd.models.complexity`), measured once per architecture and preset and cached in
  ``complexity.json``.
* :func:`crossover_histograms`: the crossover bins that the DFKD Frequency Adapter (Yuan et al.,
  arXiv 2502.04711) chooses on the teacher's outputs over the validation set, for every DFKD variant
  of the grid: method.md asks for that distribution. Read from the DFKD runs' ``history.json`` (the
  trainer logs it at each validation), or recomputed with exactly the loss the students were
  trained with (:func:`dfkd.distill.methods.make_kd_loss`, silent frames left out as in training).
* :func:`validation_curves`: the validation curves of ``none``, the best baseline and every DFKD
  variant, mean over seeds, from the final runs' ``history.json`` (:mod:`dfkd.experiment.curves`).
* :func:`listening_clips`: a few test clips enhanced by the teacher, the ``none`` student and the
  ``dfkd`` student, as WAV files and spectrogram figures.
* :func:`write_report`: all of the above plus the metric-delta chart into ``report.html``.

The report gets plain data (:class:`ReportInputs`: the config, the folder, the cells and what is
done, the pairs), never the object that runs the grid, so it cannot reach back into it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from . import plots
from .curves import mean_curve, read_history
from ..checkpoint import load_model
from .html import ReportClip, ReportFigure, write_report_html
from .config import EvaluationConfig, ExperimentConfig
from .plan import Cell, pick_clips
from .record import has_weights, untrained_model, weights_in
from ..files import write_json
from ..training.schedule import split_schedule_options
from .results import BASELINE, TEACHER, Results
from .. import SAMPLE_RATE


@dataclass(frozen=True)
class ReportInputs:
    """What the report needs of a grid, as plain data.

    Attributes:
        config: the grid's configuration.
        out: the experiment folder.
        teachers: arch -> the teacher cell.
        finals: the final cells (students and teachers) of the table.
        scored: the cells whose scoring is finished.
        ready_teachers: the architectures whose teacher model exists (pretrained or trained).
        test_pairs: the test split (after ``evaluation.test_clips``).
        valid_pairs: the validation files, None when the corpus mixes them on the fly (DNS).
        device: where the report runs models.
        machine: one line describing this machine.
    """

    config: ExperimentConfig
    out: Path
    teachers: dict[str, Cell]
    finals: Sequence[Cell]
    scored: Sequence[Cell]
    ready_teachers: frozenset[str]
    test_pairs: Sequence[Any]
    valid_pairs: Sequence[Any] | None
    device: str
    machine: str

    def is_scored(self, cell: Cell) -> bool:
        return cell in self.scored



def _load_cache(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text()) if path.is_file() else {}
    except ValueError:  # a cache is only a cache: recompute rather than fail
        return {}


def complexity(out: Path, evaluation: EvaluationConfig, machine: str, arch: str, preset: str,
               source: str) -> dict[str, Any]:
    """``{"params", "macs", "rtf"}`` of the model at ``source``, cached per arch and preset in
    ``out/complexity.json``."""
    from ..models.complexity import count_macs, count_params, real_time_factor

    path = out / "complexity.json"
    cache = _load_cache(path)
    key = f"{arch}/{preset}/{evaluation.complexity_seconds:g}s/{evaluation.rtf_threads}threads"
    if key not in cache:
        source_path = Path(source)
        if source_path.is_dir() and not weights_in(source_path):
            model = untrained_model(source_path)  # restored from a record: the size is the same
        else:
            model = load_model(source).cpu()
        cache[key] = {
            "params": count_params(model),
            "macs": int(count_macs(model, seconds=evaluation.complexity_seconds)),
            "rtf": float(real_time_factor(model, seconds=evaluation.complexity_seconds,
                                          threads=evaluation.rtf_threads)),
            "machine": machine,
        }
        write_json(path, cache)
    return cache[key]


def _logged_counts(cells: Sequence[Cell]) -> list[int] | None:
    """The crossover counts the trainer logged at its last validation of the first of ``cells``.

    Every run of one variant sees the same teacher on the same validation set, so one run's counts
    are the variant's (summing over seeds would only count the same frames again).
    """
    for cell in sorted(cells, key=lambda c: c.seed or 0):
        history = read_history(cell.run_dir) or {}
        logged = [r["crossover_counts"] for r in history.get("valid", []) if r.get("crossover_counts")]
        if logged:
            return list(logged[-1])
    return None


def crossover_histograms(grid: ReportInputs) -> dict[str, dict[str, list[int]]]:
    """arch -> adapter rule -> counts per STFT bin of the crossover over the validation set.

    Taken from the DFKD runs' own logs (the trainer's validation, teacher outputs, non-silent
    frames), which also works for corpora mixed on the fly; recomputed on the validation files with
    the same loss when a run logged none.
    """
    from ..distill.methods import make_kd_loss

    variants = [v for v in grid.config.variants if v.method == "dfkd"]
    if not variants:
        return {}
    finals = grid.finals
    path = grid.out / "crossover.json"
    cache = _load_cache(path)
    result: dict[str, dict[str, list[int]]] = {}
    for arch, teacher in grid.teachers.items():
        counts: dict[str, list[int]] = {}
        missing = {}
        for variant in variants:
            loss = make_kd_loss("dfkd", 1.0, **split_schedule_options(variant.options)[0])
            rule = str(loss.adapter.rule)
            logged = _logged_counts([c for c in finals if c.arch == arch and c.model == variant.name])
            if logged is not None:
                counts.setdefault(rule, logged)
            else:
                missing.setdefault(rule, loss)
        missing = {rule: loss for rule, loss in missing.items() if rule not in counts}
        key = f"{arch}/{teacher.run_dir.name}"
        if missing and key in cache and set(missing) <= set(cache[key]):
            counts.update({rule: cache[key][rule] for rule in missing})
        elif missing and grid.valid_pairs is not None and arch in grid.ready_teachers:
            recomputed = _recompute_counts(grid, teacher, missing)
            cache[key] = {**cache.get(key, {}), **recomputed}
            write_json(path, cache, indent=None)
            counts.update(recomputed)
        if counts:
            result[arch] = counts
    return result


def _recompute_counts(grid: ReportInputs, teacher: Cell, losses: dict[str, Any]
                      ) -> dict[str, list[int]]:
    """Run the teacher over the validation files and count each rule's crossover bins."""
    from ..audio import load_mono

    device = grid.device
    model = load_model(teacher.model_path).to(device).eval()
    counts = {rule: torch.zeros(0, dtype=torch.long) for rule in losses}
    with torch.inference_mode():
        for pair in grid.valid_pairs or ():
            noisy = torch.from_numpy(load_mono(pair.noisy, SAMPLE_RATE))[None].to(device)
            clean = torch.from_numpy(load_mono(pair.clean, SAMPLE_RATE))[None].to(device)
            output = model(noisy)[..., : clean.shape[-1]]
            for rule, loss in losses.items():
                bins = loss(output, output, clean).crossover_bins.flatten().cpu()
                found = torch.bincount(bins, minlength=len(counts[rule]))
                counts[rule] = found + torch.nn.functional.pad(
                    counts[rule], (0, len(found) - len(counts[rule])))
    return {rule: c.tolist() for rule, c in counts.items()}


def _history(cell: Cell) -> dict[str, Any] | None:
    return read_history(cell.run_dir)


def validation_curves(grid: ReportInputs, results: Results
                      ) -> dict[str, dict[str, tuple[str, list[int], list[float]]]]:
    """arch -> row label -> (metric, steps, mean over seeds) for ``none``, the architecture's
    best baseline and every DFKD variant; final runs only (the sweep's are shorter)."""
    curves: dict[str, dict[str, tuple[str, list[int], list[float]]]] = {}
    dfkd = [v.name for v in grid.config.variants if v.method == "dfkd"]
    for arch in grid.teachers:
        rival = results.best_baseline.get(arch)
        wanted = list(dict.fromkeys([BASELINE, *([rival] if rival else []), *dfkd]))
        for model in wanted:
            histories = [h for h in (_history(c) for c in grid.finals
                                     if c.arch == arch and c.model == model) if h]
            curve = mean_curve(histories)
            if curve is not None:
                label = model + (" (best baseline)" if model == rival and model != BASELINE else "")
                curves.setdefault(arch, {})[label] = curve
    return curves


def _level_matched(enhanced: np.ndarray, clean: np.ndarray) -> np.ndarray:
    # SI-SNR-trained models have no fixed output gain: for listening and for spectrograms on one
    # colour scale, every output is brought to the clean clip's RMS (its polarity is kept)
    gain = np.sqrt(np.mean(clean**2) / max(float(np.mean(enhanced**2)), 1e-12))
    out = enhanced * gain
    peak = float(np.max(np.abs(out))) if out.size else 0.0
    return out * (0.99 / peak) if peak > 0.99 else out


def listening_clips(grid: ReportInputs, finals: Sequence[Cell],
                    best: Mapping[str, str] | None = None) -> list[ReportClip]:
    """Noisy / clean / teacher / student-``none`` / student-``dfkd`` for a few test clips, and the
    architecture's best student (``best``: arch -> row name) when it is another one."""
    from ..audio import load_mono, write_audio
    from ..models.inference import enhance_utterance

    pairs = grid.test_pairs
    chosen = [pairs[i] for i in pick_clips(grid.config.report.clips, len(pairs))]
    if not chosen:
        return []
    variants = grid.config.variants
    dfkd_name = next((v.name for v in variants if v.method == "dfkd" and v.name == "dfkd"),
                     next((v.name for v in variants if v.method == "dfkd"), None))
    out, device = grid.out, grid.device
    clips: list[ReportClip] = []
    for arch, teacher in grid.teachers.items():
        def first(model: str) -> tuple[Cell | None, str]:
            """The row's lowest-seed final with weights here, else why there is none."""
            scored = [c for c in finals if c.arch == arch and c.model == model and grid.is_scored(c)]
            mine = [c for c in scored if has_weights(c)]  # a cell restored from a record has none
            if mine:
                return min(mine, key=lambda c: c.seed or 0), ""
            return None, ("restored from the record: scores, no weights here" if scored
                          else "not scored yet")

        playable = grid.is_scored(teacher) and has_weights(teacher)
        systems = [(f"teacher ({arch})", teacher if playable else None, "no weights here"),
                   (f"student {BASELINE}", *first(BASELINE))]
        if dfkd_name is not None:
            systems.append((f"student {dfkd_name}", *first(dfkd_name)))
        winner = (best or {}).get(arch)
        if winner is not None and winner not in (BASELINE, dfkd_name):
            systems.append((f"student {winner} (best)", *first(winner)))
        loaded = [(label, load_model(cell.model_path).to(device).eval())
                  for label, cell, _ in systems if cell is not None]
        if not loaded:
            continue
        # Say who is missing from the players rather than leave the reader to wonder why.
        missing = [f"{label} ({why})" for label, cell, why in systems if cell is None]
        for pair in chosen:
            noisy, clean = load_mono(pair.noisy, SAMPLE_RATE), load_mono(pair.clean, SAMPLE_RATE)
            waves = [("noisy", noisy), ("clean", clean)]
            waves += [(label, _level_matched(enhance_utterance(model, noisy, device), clean))
                      for label, model in loaded]
            audio = []
            for label, wave in waves:
                shared = label in ("noisy", "clean")  # the same for every architecture
                stem = label if shared else f"{arch}_{label.split(' (')[0].replace(' ', '_')}"
                rel = f"audio/{pair.name}/{stem}.wav"
                if not (shared and (out / rel).is_file()):
                    write_audio(out / rel, wave, SAMPLE_RATE)
                audio.append((label, rel))
            figure = f"plots/spectrograms_{arch}_{pair.name}.png"
            plots.plot_spectrograms(f"{arch}: {pair.name}", waves, out / figure)
            clips.append(ReportClip(f"{arch}: {pair.name}", figure, audio, missing))
    return clips


def write_report(grid: ReportInputs, results: Results) -> Path:
    """Figures, audio and ``report.html`` into the experiment folder."""
    out = grid.out
    figures = []
    deltas = plots.plot_deltas(results, out / "plots" / "deltas.png")
    if deltas is not None:
        figures.append(ReportFigure(
            f"Gain over `{BASELINE}` per method", "plots/deltas.png",
            "Per clip, each method's score (mean over its seeds) minus the `none` student's; bars "
            "are the mean over test clips, error bars one standard error."))
    if plots.plot_validation(validation_curves(grid, results), out / "plots" / "validation.png"):
        figures.append(ReportFigure(
            "Validation curves", "plots/validation.png",
            "Validation SI-SNRi (SI-SNR where a run did not log it) against the training step of "
            "the final runs of `none`, the best baseline and every DFKD variant, mean over seeds: "
            "flat at the end means converged at this schedule."))
    histograms = crossover_histograms(grid)
    if plots.plot_crossover(histograms, out / "plots" / "crossover.png") is not None:
        figures.append(ReportFigure(
            "DFKD crossover frequency", "plots/crossover.png",
            "Crossover chosen by each adapter rule on the teacher's outputs over the validation "
            "set (non-silent frames), as used in training."))
    best = {row.arch: row.model for row in results.rows if row.best}
    clips = listening_clips(grid, [c for c in grid.finals if c.model != TEACHER], best)
    return write_report_html(results, out, figures, clips,
                             title=f"dfkd comparison: {grid.config.name}")
