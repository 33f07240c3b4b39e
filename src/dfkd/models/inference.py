"""Run a model over audio: the one place where a ``(batch, samples)`` array meets ``model(...)``.

Used by evaluation (whole utterances), the experiment report (listening clips) and
:class:`dfkd.deploy.enhance.TorchBackend` (chunks of a stream): eval-mode callers, no autograd.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


def enhance_batch(model: nn.Module, batch: np.ndarray, device: str | torch.device = "cpu") -> np.ndarray:
    """``model`` over a ``(batch, samples)`` float32 array on ``device``, without autograd."""
    with torch.inference_mode():
        noisy = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)).to(device)
        return model(noisy).float().cpu().numpy()


def enhance_utterance(model: nn.Module, noisy: np.ndarray, device: str | torch.device = "cpu") -> np.ndarray:
    """Enhance one whole utterance (float32, 16 kHz) without autograd; same length back."""
    enhanced = enhance_batch(model, noisy[None], device)[0]
    if len(enhanced) >= len(noisy):
        return enhanced[: len(noisy)]
    return np.pad(enhanced, (0, len(noisy) - len(enhanced)))
