"""Knowledge distillation: the KD losses between a student and a frozen teacher.

``spectra`` holds the STFT helpers every spectral method shares, ``adapter`` and ``bands`` the DFKD Frequency
Adapter and band losses, ``methods`` every KD loss and :func:`make_kd_loss`, ``teacher_cache`` the stored teacher
outputs that spare the teacher's forward pass.
"""

from .methods import DEFAULT_WEIGHTS, KD_METHODS, KDLoss, KDOutput, make_kd_loss, register_kd_loss

__all__ = ["DEFAULT_WEIGHTS", "KD_METHODS", "KDLoss", "KDOutput", "make_kd_loss", "register_kd_loss"]
