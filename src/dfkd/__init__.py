"""dfkd: knowledge distillation for speech enhancement.

Built around Dynamic Frequency-Adaptive Knowledge Distillation (DFKD): Yuan, Liu, Chen, Zhou, Li, Hu,
"Dynamic Frequency-Adaptive Knowledge Distillation for Speech Enhancement", arXiv 2502.04711, 2025.
"""

__version__ = "0.1.0"
SAMPLE_RATE = 16000
