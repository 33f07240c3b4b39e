"""Shared pieces of the streaming tests: models whose norms matter, offline reference, signals."""

from __future__ import annotations

import numpy as np
import torch

from dfkd import models


def perturbed_model(arch: str, preset: str, seed: int = 0, **overrides) -> torch.nn.Module:
    """An eval-mode model whose norms are not the identity, so a stream that dropped their state
    (cLN running sums, BatchNorm statistics) could not match the offline forward."""
    torch.manual_seed(seed)
    model = models.build(arch, preset, **overrides).eval()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.2, 0.2)
                module.running_var.uniform_(0.5, 1.5)
                module.weight.uniform_(0.7, 1.3)
                module.bias.uniform_(-0.1, 0.1)
            elif hasattr(module, "gamma"):
                module.gamma.uniform_(0.5, 1.5)
                module.beta.uniform_(-0.3, 0.3)
    return model


def offline(model: torch.nn.Module, signal: np.ndarray) -> np.ndarray:
    """The model's whole-file forward of a 1-D signal."""
    with torch.inference_mode():
        return model(torch.from_numpy(signal)[None])[0].numpy()


def noise_signal(samples: int, seed: int = 1) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal(samples) * 0.3).astype(np.float32)
