"""Patches of bins x frames on the frames-major spectra of :func:`dfkd.distill.spectra.stft_frames`.

Two KD losses cut the spectrum into patches and reduce each patch on its own:

* DISPatch (Kim & Choi, "DISPatch: Distilling Selective Patches for Speech Enhancement",
  arXiv 2509.15922, ICASSP 2026) scores patches of ``height`` bins x ``width`` frames; with
  *multi-scale selective patches* (MSSP) the height is smaller below the DFKD crossover (10 bins)
  than above it (40 bins). :func:`dispatch_patch_ids` numbers those patches.
* DFKD's per-patch cosines (the public re-implementation used as the DFKD baseline of DISPatch)
  take the cosine over chunks of bins of one frame inside each band. :func:`band_chunk_ids`
  numbers those chunks.

A patch is given as an integer id per spectrum cell ``(batch, frames, bins)``; :func:`segment_sums`
adds any per-cell quantity up per id (``scatter_add``, so autograd flows through it). Ids equal to
the number of segments mark cells outside every patch and are dropped.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import DfkdError


@dataclass(frozen=True)
class PatchHeights:
    """Patch heights in bins below (``low``) and above (``high``) the crossover.

    ``follows_crossover`` is False for a single height (``"20"``): one uniform grid from bin 0, the
    crossover not needed. ``"L/H"`` follows the crossover (``"20/20"`` included).
    """

    low: int
    high: int
    follows_crossover: bool = True

    def __str__(self) -> str:
        return f"{self.low}/{self.high}" if self.follows_crossover else str(self.low)


def parse_patch_heights(spec: str | int, what: str = "patch_bins") -> PatchHeights:
    """``"10/40"`` (low/high band heights in bins) or ``"20"`` / ``20`` (one uniform height)."""
    text = str(spec).strip()
    low_text, sep, high_text = text.partition("/")
    try:
        low = int(low_text)
        high = int(high_text) if sep else low
    except ValueError:
        raise DfkdError(f"{what} {spec!r}: expected HEIGHT or LOW/HIGH in bins, e.g. 10/40") from None
    if low < 1 or high < 1:
        raise DfkdError(f"{what} {spec!r}: patch heights must be >= 1 bin")
    return PatchHeights(low, high, follows_crossover=bool(sep))


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def dispatch_patch_ids(
    n_frames: int,
    n_bins: int,
    heights: PatchHeights,
    width: int,
    crossover_bins: torch.Tensor | None,
    batch: int,
    device: torch.device | None = None,
) -> tuple[torch.Tensor, int, torch.Tensor]:
    """Patch id of every cell ``(batch, frames, bins)``, the number of ids, and which ids are high band.

    Frames are grouped by ``width`` (the last group may be shorter). Within a group, with the
    crossover ``m`` of each frame, bins ``f <= m`` form patches of ``heights.low`` counted from bin 0
    and bins ``f > m`` patches of ``heights.high`` counted from ``m + 1`` (the patches follow the
    crossover from frame to frame, so a patch never straddles the two bands; the crossover bin
    goes to the low band). Without a crossover (``heights.follows_crossover`` False, or
    ``crossover_bins`` None) every bin is in one uniform grid of ``heights.low``, labelled high.
    """
    freq = torch.arange(n_bins, device=device)
    group = (torch.arange(n_frames, device=device) // width)[None, :, None]
    n_groups = _ceil_div(n_frames, width)
    low_slots = _ceil_div(n_bins, heights.low)
    per_group = low_slots + _ceil_div(n_bins, heights.high)
    if crossover_bins is None or not heights.follows_crossover:
        chunk = (low_slots + freq // heights.low)[None, None, :].expand(batch, n_frames, n_bins)
    else:
        split = crossover_bins[..., None]
        chunk = torch.where(freq <= split, freq // heights.low,
                            low_slots + (freq - split - 1).clamp_min(0) // heights.high)
    ids = group * per_group + chunk
    is_high = (torch.arange(n_groups * per_group, device=device) % per_group) >= low_slots
    return ids, n_groups * per_group, is_high


def band_chunk_ids(crossover_bins: torch.Tensor, n_bins: int, height: int, band: str,
                   inclusive: bool = True) -> tuple[torch.Tensor, int]:
    """Chunk of ``height`` bins of every cell inside one band of its frame, ``(batch, frames, bins)``.

    ``band="low"``: bins ``f <= m`` in chunks from bin 0; ``band="high"``: bins ``f >= m``
    (``f > m`` when not ``inclusive``) in chunks from the band's first bin. Cells outside the band
    get the dump id; returns ``(ids, chunks per frame)``, ids of frame ``t`` in ``[t K, (t+1) K)``.
    """
    freq = torch.arange(n_bins, device=crossover_bins.device)
    split = crossover_bins[..., None]
    per_frame = _ceil_div(n_bins, height)
    n_frames = crossover_bins.shape[-1]
    if band == "low":
        inside, chunk = freq <= split, freq // height
    else:
        first = split if inclusive else split + 1
        inside, chunk = freq >= first, (freq - first).clamp_min(0) // height
    frame = torch.arange(n_frames, device=crossover_bins.device)[None, :, None]
    dump = n_frames * per_frame
    return torch.where(inside, frame * per_frame + chunk, dump), per_frame


def segment_sums(values: torch.Tensor, ids: torch.Tensor, n_segments: int) -> torch.Tensor:
    """Sums of per-cell ``values (batch, frames, bins, Q)`` per id: ``(batch, n_segments, Q)``.

    ``ids`` is ``(batch, frames, bins)`` in ``[0, n_segments]``; ``n_segments`` itself is the dump
    slot of cells outside every segment, dropped from the result.
    """
    batch, quantities = values.shape[0], values.shape[-1]
    flat = values.reshape(batch, -1, quantities)
    index = ids.reshape(batch, -1, 1).expand(-1, -1, quantities)
    sums = flat.new_zeros(batch, n_segments + 1, quantities).scatter_add(1, index, flat)
    return sums[:, :n_segments]
