"""DISPatch: distil only the spectrogram patches where the teacher beats the student.

Kim & Choi, "DISPatch: Distilling Selective Patches for Speech Enhancement", arXiv 2509.15922,
ICASSP 2026. The STFT (512 / 128 Hann) of student S, teacher T and clean target Y is cut into
patches (:mod:`dfkd.distill.patches`). Each patch p gets a *knowledge-gap score*

    KGS_p = E_p(S, Y) - E_p(T, Y)

with ``E_p`` the same patch loss as the KD term, taken against the clean spectrum: high where the
teacher is much closer to the target than the student. Of the *valid* patches of each utterance
(patches with any cell and a teacher level above the silence threshold) only the top ``top_k``
fraction by score receives the KD loss ``E_p(S, T)``; the loss is the sum over kept patches divided
by the number kept. The score is computed without gradient.

Patch losses (``base``):

* ``spectral``: mean over the patch of ``(|A| - |B|)^2`` (DISPatch on "conventional KD");
* ``dfkd``: DFKD's band loss taken over the patch (DISPatch on DFKD): ``1 - cos_p(A, B)`` below the
  crossover and ``beta (1 - cos_p) + (1 - beta) mean_p (|A| - |B|)^2`` above, with
  ``cos_p = sum_p Re(A conj B) / (||A_p|| ||B_p|| + eps)`` over all cells of the patch.
"""

from __future__ import annotations

import math

import torch

from .bands import EPS, SILENCE_FLOOR
from .patches import segment_sums
from .spectra import power

BASES: tuple[str, ...] = ("spectral", "dfkd")


def _patch_quantities(a: torch.Tensor, b: torch.Tensor, a_mag: torch.Tensor, b_mag: torch.Tensor
                      ) -> list[torch.Tensor]:
    """Per-cell terms of a patch loss between A and B: Re(A conj B), |B|^2, (|A| - |B|)^2."""
    dot = a[..., 0] * b[..., 0] + a[..., 1] * b[..., 1]
    return [dot, power(b), (a_mag - b_mag).pow(2)]


def _patch_loss(sums: torch.Tensor, a_energy: torch.Tensor, count: torch.Tensor, is_high: torch.Tensor,
                base: str, beta: float) -> torch.Tensor:
    """Patch loss from the patch sums of :func:`_patch_quantities` ``(batch, patches, 3)``."""
    dot, b_energy, error = sums.unbind(dim=-1)
    magnitude_mse = error / count.clamp_min(1.0)
    if base == "spectral":
        return magnitude_mse
    one_minus_cos = 1.0 - dot / (a_energy.clamp_min(1e-20).sqrt() * b_energy.clamp_min(1e-20).sqrt() + EPS)
    high = beta * one_minus_cos + (1.0 - beta) * magnitude_mse
    return torch.where(is_high, high, one_minus_cos)


def dispatch_loss(
    teacher: torch.Tensor,
    student: torch.Tensor,
    clean: torch.Tensor,
    ids: torch.Tensor,
    n_patches: int,
    is_high: torch.Tensor,
    base: str = "spectral",
    top_k: float = 0.8,
    beta: float = 0.5,
    silence_db: float = -60.0,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """DISPatch loss on frames-major real/imaginary spectra ``(batch, frames, bins, 2)``.

    ``ids``/``n_patches``/``is_high`` come from :func:`dfkd.distill.patches.dispatch_patch_ids`.
    A patch is valid when it has cells and its teacher power per cell lies above ``silence_db``
    relative to the utterance's loudest frame (power per bin), floored absolutely so that an
    all-zero teacher (a zero-padded tail) is never valid. Per utterance, ``ceil(top_k * valid)``
    patches are kept. Returns the loss and detached parts: ``kept`` (patches kept / valid) and
    ``gap`` (mean score of the kept patches).
    """
    teacher, clean = teacher.detach(), clean.detach()
    t_mag, s_mag, y_mag = (power(x).clamp_min(1e-20).sqrt() for x in (teacher, student, clean))
    t_power = power(teacher)
    ones = torch.ones_like(t_power)
    high = is_high[None, :]
    fixed = segment_sums(torch.stack([t_power, power(clean), ones], dim=-1), ids, n_patches)
    t_energy, y_energy, count = fixed.unbind(dim=-1)
    kd_sums = segment_sums(torch.stack(_patch_quantities(teacher, student, t_mag, s_mag), -1), ids, n_patches)
    kd = _patch_loss(kd_sums, t_energy, count, high, base, beta)
    with torch.no_grad():
        student_gap = _patch_loss(segment_sums(torch.stack(
            _patch_quantities(clean, student.detach(), y_mag, s_mag.detach()), -1), ids, n_patches),
            y_energy, count, high, base, beta)
        teacher_gap = _patch_loss(segment_sums(torch.stack(
            _patch_quantities(clean, teacher, y_mag, t_mag), -1), ids, n_patches),
            y_energy, count, high, base, beta)
        score = student_gap - teacher_gap
        loudest = t_power.mean(dim=-1).amax(dim=-1, keepdim=True)  # (batch, 1) power per bin
        threshold = (loudest * 10.0 ** (silence_db / 10.0)).clamp_min(SILENCE_FLOOR)
        valid = (count > 0) & (t_energy / count.clamp_min(1.0) > threshold)
        keep_count = torch.ceil(valid.sum(dim=-1, keepdim=True) * float(top_k) - 1e-9)
        ranked = torch.where(valid, score, -math.inf)
        order = ranked.argsort(dim=-1, descending=True)
        rank = torch.empty_like(order).scatter_(-1, order, torch.arange(n_patches, device=order.device)
                                                .expand_as(order).contiguous())
        kept = valid & (rank < keep_count)
        n_kept = kept.sum()
    loss = (kd * kept).sum() / n_kept.clamp_min(1)
    parts = {
        "kept": (n_kept / valid.sum().clamp_min(1)).detach().float(),
        "gap": ((score * kept).sum() / n_kept.clamp_min(1)).float(),
    }
    return loss, parts
