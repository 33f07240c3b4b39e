"""dfkd: knowledge distillation for speech enhancement.

Built around Dynamic Frequency-Adaptive Knowledge Distillation (DFKD): Yuan, Liu, Chen, Zhou, Li, Hu,
"Dynamic Frequency-Adaptive Knowledge Distillation for Speech Enhancement", arXiv 2502.04711, 2025.
"""

__version__ = "0.1.0"
SAMPLE_RATE = 16000

# The Python API (dfkd.api) by attribute, imported on first use so that `import dfkd` (and
# `dfkd --version`) load no torch: dfkd.load, dfkd.Enhancer, dfkd.distill_student, ...
_API = ("Enhancer", "KDLoss", "KDOutput", "PretrainedModel", "distill_student", "kd_methods", "load",
        "mix_corpus", "pretrained_models", "register_kd_loss")


def __getattr__(name: str):
    """PEP 562: the names of :mod:`dfkd.api` as ``dfkd.<name>`` (README, "Python API")."""
    if name in _API:
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module 'dfkd' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + list(_API))
