"""DNSMOS P.835: reference-free SIG / BAK / OVRL predicted by a neural network (optional extra).

Reddy, Gopal & Cutler, "DNSMOS P.835: A Non-Intrusive Perceptual Objective Speech Quality Metric
to Evaluate Noise Suppressors", ICASSP 2022. The ONNX model (``sig_bak_ovr.onnx``) and the
polynomial calibration come from Microsoft's ``dnsmos_local.py``, as shipped inside the
``speechmos`` wheel. We only read the ONNX file from that wheel and run it with onnxruntime
ourselves: importing ``speechmos.dnsmos`` would pull ``librosa`` and ``requests``, which only its
P.808 model needs, and no network access is ever made.

Install with ``pip install dfkd[dnsmos]``.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
from scipy.signal import resample_poly

from ..errors import DfkdError
from .. import SAMPLE_RATE

INPUT_SECONDS = 9.01  # the model's fixed input: 144160 samples
# Non-personalised calibration polynomials of dnsmos_local.py (highest power first).
_POLY_SIG = np.poly1d([-0.08397278, 1.22083953, 0.0052439])
_POLY_BAK = np.poly1d([-0.13166888, 1.60915514, -0.39604546])
_POLY_OVRL = np.poly1d([-0.06766283, 1.11546468, 0.04602535])

_session = None  # one per process: loading the model costs more than scoring a clip


def model_path() -> Path:
    """Path of ``sig_bak_ovr.onnx`` inside the installed ``speechmos`` package."""
    spec = importlib.util.find_spec("speechmos")
    if spec is None or spec.origin is None:
        raise DfkdError(
            "DNSMOS needs the ONNX models shipped in the `speechmos` package: "
            "pip install dfkd[dnsmos]"
        )
    path = Path(spec.origin).parent / "dnsmos_models" / "sig_bak_ovr.onnx"
    if not path.is_file():
        raise DfkdError(f"{path}: DNSMOS model missing from the installed speechmos package")
    return path


def _get_session():
    global _session
    if _session is None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        # Evaluation already runs one worker process per core: one thread each.
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        _session = ort.InferenceSession(
            str(model_path()), options, providers=["CPUExecutionProvider"]
        )
    return _session


def dnsmos(audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> dict[str, float]:
    """``dnsmos_sig``, ``dnsmos_bak``, ``dnsmos_ovrl`` of one clip (MOS scale, about 1-5).

    As in ``dnsmos_local.py``: a clip shorter than 9.01 s is repeated until it is long enough,
    the model scores 9.01 s windows with a 1 s hop, and the calibrated scores are averaged.
    """
    audio = np.asarray(audio, dtype=np.float64)
    if sample_rate != SAMPLE_RATE:
        audio = resample_poly(audio, SAMPLE_RATE, sample_rate)
    if audio.size == 0 or not np.any(audio):
        raise DfkdError("DNSMOS: the clip is empty or all zeros")
    window = int(INPUT_SECONDS * SAMPLE_RATE)
    while len(audio) < window:
        audio = np.concatenate([audio, audio])
    hops = int(np.floor(len(audio) / SAMPLE_RATE) - INPUT_SECONDS) + 1
    batch = np.stack(
        [audio[i * SAMPLE_RATE : i * SAMPLE_RATE + window] for i in range(hops)]
    ).astype(np.float32)
    session = _get_session()
    raw = session.run(None, {session.get_inputs()[0].name: batch})[0]  # (hops, 3)
    return {
        "dnsmos_sig": float(np.mean(_POLY_SIG(raw[:, 0]))),
        "dnsmos_bak": float(np.mean(_POLY_BAK(raw[:, 1]))),
        "dnsmos_ovrl": float(np.mean(_POLY_OVRL(raw[:, 2]))),
    }
