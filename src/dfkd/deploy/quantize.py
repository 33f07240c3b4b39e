"""int8 that pays on CPU: static QDQ quantisation with calibration clips, or dynamic, per architecture.

Integer-arithmetic inference (Jacob et al. 2018, "Quantization and Training of Neural Networks for
Efficient Integer-Arithmetic-Only Inference") maps every float tensor ``x`` to ``q = round(x / s) + z``
with a scale ``s`` and zero point ``z``. ONNX Runtime offers two ways to get there
(onnxruntime.ai/docs/performance/model-optimizations/quantization.html):

* **dynamic** (``quantize_dynamic``, :func:`dfkd.deploy.export.quantize_int8`): int8 weights,
  activation scales computed at run time for every call. Its ``ConvInteger`` has no fused,
  blocked kernel on x86 and made every model here 4-5x slower; its ``MatMulInteger`` and
  ``DynamicQuantizeLSTM`` do pay a little, so dynamic suits DPTNet (MatMul + LSTM).
* **static** (``quantize_static`` in QDQ format, :func:`quantize_static_int8`): activation scales
  fixed beforehand from calibration clips; the graph carries ``QuantizeLinear`` /
  ``DequantizeLinear`` pairs around each convolution, which ONNX Runtime's graph optimiser fuses
  into ``QLinearConv`` (u8 activations x s8 weights, VNNI on AVX-512 CPUs). Weights per output
  channel, which keeps the depthwise convs of Conv-TasNet's TCN accurate. The ``MatMul`` and
  ``LSTM`` nodes are then quantised dynamically as above (static QDQ MatMuls were 0.87-1.00x the
  fp32 speed on DPTNet, dynamic ones 1.04-1.17x), so "static" means static convolutions.

What is left in float32, and why (measured with ``benchmarks/int8_quality.py``; the README's
``dfkd export`` section has the table):

* the **first convolution** (Conv-TasNet's waveform encoder, DCCRN's STFT, DPTNet's encoder): its
  input is the waveform, whose quiet passages an 8-bit scale fixed for the loudest clip crushes
  (Conv-TasNet ``small``: int8 output 26 dB from fp32 with it, 35 dB without);
* DCCRN's **encoder** convolutions, which read the complex spectrogram (:func:`float_convs`);
* ``LeakyRelu`` / ``Add``: quantising them too cost 3 dB agreement and no speed (each still
  meets a float InstanceNormalization, so the graph re-enters float anyway);
* ``ConvTranspose`` (one final overlap-add per model, a few per cent of the time) and
  ``com.microsoft.MultiHeadAttention`` (a float-only fused kernel) are not in the quantised set.

Calibration uses the histogram ``Percentile`` method (99.999 %): it ignores the rare peak that
MinMax lets set the whole scale (+2 dB agreement on Conv-TasNet). It needs inputs of one shape,
so :class:`ClipReader` cuts the clips into segments of :data:`CALIBRATION_SECONDS`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..errors import DfkdError
from ..files import atomic_write
from .export import _quiet_root_logger, op_counts, quantize_int8

#: int8 scheme per architecture, chosen from measurements (see the module docstring / README).
#: Measured at 1 thread (benchmarks/int8_quality.py): static was 1.30-1.45x the fp32 speed on
#: Conv-TasNet and 1.46-1.61x on DCCRN (dynamic: 0.89-1.19x); on DPTNet both were 1.03-1.15x and
#: dynamic follows fp32 closer (42-48 dB against 32-45 dB), since its time goes to the LSTM
#: recurrence and the attention, which neither scheme makes integer.
DEFAULT_SCHEME: dict[str, str] = {"convtasnet": "static", "dccrn": "static", "dptnet": "dynamic"}
SCHEMES: tuple[str, ...] = ("static", "dynamic")
CALIBRATION_CLIPS = 8  # default number of clips (the benchmark's 8 demo train clips: 3 s each)
CALIBRATION_SECONDS = 3.0  # each calibration input: one segment of this length
STATIC_OPS: tuple[str, ...] = ("Conv",)
#: node-name prefixes (as exported through dfkd.deploy.rewrite) of convs kept in float32
KEEP_FLOAT_PREFIXES: dict[str, tuple[str, ...]] = {"dccrn": ("/encoders.",)}
DYNAMIC_AFTER_STATIC: tuple[str, ...] = ("MatMul", "LSTM")  # then quantised dynamically
# int8 operators of the graph ONNX Runtime runs once it has fused the QDQ / dynamic patterns
FUSED_INT8_OPS = ("QLinearConv", "QLinearAdd", "MatMulInteger", "DynamicQuantizeMatMul",
                  "MatMulIntegerToFloat", "DynamicQuantizeLSTM")
FLOAT_OPS = ("Conv", "ConvTranspose", "MatMul", "Gemm", "LSTM", "MultiHeadAttention")
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".aiff", ".aif")


def default_scheme(arch: str) -> str:
    """The int8 scheme ``--int8`` uses for ``arch`` (``"dynamic"`` for an unknown one)."""
    return DEFAULT_SCHEME.get(arch, "dynamic")


# ---------------------------------------------------------------------------------------------
# Calibration clips


def calibration_clips(folder: str | os.PathLike, count: int = CALIBRATION_CLIPS,
                      sample_rate: int = 16000) -> list[np.ndarray]:
    """Up to ``count`` clips to calibrate with, read from ``folder``.

    ``folder`` is either a corpus that :mod:`dfkd.data.layouts` reads (its noisy *train* clips, so
    that calibration never sees the test clips that score the result) or any folder of audio
    files (read recursively, sorted by name). Raises :class:`DfkdError` naming the folder when it
    holds no audio and naming the file when one cannot be read.
    """
    from ..audio import load_mono

    folder = Path(folder)
    if not folder.is_dir():
        raise DfkdError(f"--calibrate {folder}: not a folder")
    if count < 1:
        raise DfkdError(f"--calibrate-clips {count}: must be at least 1")
    files = _corpus_noisy_files(folder)
    if files is None:
        files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES
                       and p.is_file())
    if not files:
        raise DfkdError(f"--calibrate {folder}: no audio files (.wav, .flac, .ogg, .aiff) found")
    clips = []
    for path in files[:count]:
        try:
            clip = load_mono(path, sample_rate, cache=False)
        except Exception as err:  # soundfile raises LibsndfileError, RuntimeError, ...
            raise DfkdError(f"{path}: cannot read calibration audio "
                            f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})"
                            ) from err
        if clip.size == 0 or not np.all(np.isfinite(clip)):
            raise DfkdError(f"{path}: calibration audio is empty or not finite")
        clips.append(clip.astype(np.float32))
    return clips


def _corpus_noisy_files(folder: Path) -> list[Path] | None:
    """The noisy train files of a corpus at ``folder``; ``None`` when it is not a known layout."""
    from ..data.layouts import corpus_pairs

    try:
        pairs = corpus_pairs(folder, "train")
    except Exception:  # not a corpus: treat as a plain folder of audio files
        return None
    return [Path(p.noisy) for p in pairs] or None


def segments(clips: Sequence[np.ndarray], seconds: float = CALIBRATION_SECONDS,
             sample_rate: int = 16000) -> list[np.ndarray]:
    """One ``(1, seconds)`` segment per clip: the middle of a long clip, a short one repeated."""
    length = int(round(seconds * sample_rate))
    out = []
    for clip in clips:
        if clip.shape[0] >= length:
            start = (clip.shape[0] - length) // 2
            segment = clip[start:start + length]
        else:
            segment = np.resize(clip, length)  # repeats the clip: same level, no padded silence
        out.append(np.ascontiguousarray(segment[None], dtype=np.float32))
    return out


class ClipReader:
    """``onnxruntime.quantization.CalibrationDataReader`` over fixed-length segments of clips."""

    def __init__(self, clips: Sequence[np.ndarray], input_name: str = "noisy",
                 seconds: float = CALIBRATION_SECONDS) -> None:
        self._inputs = [{input_name: s} for s in segments(clips, seconds)]
        self._next = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._next >= len(self._inputs):
            return None
        self._next += 1
        return self._inputs[self._next - 1]

    def rewind(self) -> None:
        self._next = 0


# ---------------------------------------------------------------------------------------------
# Quantisers


def float_convs(path: str | os.PathLike, arch: str = "") -> list[str]:
    """The Conv nodes static int8 leaves in float32: the first one, plus ``arch``'s own list.

    The first conv reads the waveform (see the module docstring). DCCRN also keeps its encoder:
    its convs read the complex spectrogram, whose dynamic range (tens of dB between bins) one
    8-bit scale per tensor cannot hold. Quantising them cost 1.0 dB SI-SNRi and 0.25 PESQ-WB on
    the trained ``small`` model; with the encoder in float and the decoder in int8, 0.15 dB and
    0.003.
    """
    import onnx

    names = [node.name for node in onnx.load(str(path)).graph.node if node.op_type == "Conv"]
    prefixes = KEEP_FLOAT_PREFIXES.get(arch, ())
    return names[:1] + [n for n in names[1:] if n.startswith(prefixes)]


def quantize_static_int8(src: str | os.PathLike, dst: str | os.PathLike,
                         clips: Sequence[np.ndarray], arch: str = "",
                         op_types: Sequence[str] = STATIC_OPS,
                         keep_float: Sequence[str] | None = None,
                         method: str = "Percentile") -> dict[str, Any]:
    """Static int8 QDQ quantisation of ``src`` into ``dst`` (atomic), calibrated on ``clips``.

    Per-channel s8 weights, u8 activations (the fast pair on x86), Percentile calibration, the
    convolutions of :func:`float_convs` (or ``keep_float``, node names) kept in float32, then
    ``MatMul`` / ``LSTM`` quantised dynamically (see the module docstring). ``method`` is the
    ``onnxruntime.quantization.CalibrationMethod`` (MinMax cost DCCRN 0.8 dB SI-SNRi more).
    Returns the report of :func:`dfkd.deploy.export.quantize_int8` (its op counts taken from the
    graph ONNX Runtime runs, :func:`fused_op_counts`) plus ``"scheme": "static"``, the
    ``float32_nodes`` kept and the number of ``calibration_segments``.
    """
    from onnxruntime.quantization import (CalibrationMethod, QuantFormat, QuantType,
                                          quantize_dynamic, quantize_static)

    if not clips:
        raise DfkdError("static int8 quantisation needs at least one calibration clip")
    excluded = list(keep_float) if keep_float is not None else float_convs(src, arch)

    def write(tmp: str) -> None:
        with _quiet_root_logger():
            # the calibrator writes an augmented model to a temp dir of its own (cleaned up by it)
            quantize_static(str(src), tmp, ClipReader(clips), quant_format=QuantFormat.QDQ,
                            op_types_to_quantize=list(op_types), per_channel=True,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                            nodes_to_exclude=excluded,
                            calibrate_method=getattr(CalibrationMethod, method))

    def write_then_dynamic(tmp: str) -> None:
        write(tmp)
        if any(op in op_counts(tmp) for op in DYNAMIC_AFTER_STATIC):
            with _quiet_root_logger():
                quantize_dynamic(tmp, tmp, weight_type=QuantType.QInt8,
                                 op_types_to_quantize=list(DYNAMIC_AFTER_STATIC))

    _run_quietly(write_then_dynamic, dst)
    # in the file a quantised Conv is DequantizeLinear -> Conv -> QuantizeLinear; ONNX Runtime
    # fuses it into QLinearConv when a session is created, so count what it will run
    fused = fused_op_counts(dst)
    return {
        "scheme": "static",
        "fp32_bytes": os.path.getsize(src),
        "int8_bytes": os.path.getsize(dst),
        "quantized_ops": {op: fused[op] for op in FUSED_INT8_OPS if op in fused},
        "float_ops": {op: fused[op] for op in FLOAT_OPS if op in fused},
        "float32_nodes": excluded,
        "calibration_segments": len(clips),
    }


def _run_quietly(write, dst: str | os.PathLike) -> None:
    # the calibrator prints its histogram progress to stdout; keep the command's output readable
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()):
        atomic_write(dst, write)


def fused_op_counts(path: str | os.PathLike) -> dict[str, int]:
    """Operator counts of the graph ONNX Runtime actually runs (after its CPU optimisations)."""
    import tempfile
    from collections import Counter

    import onnx
    import onnxruntime as ort

    with tempfile.TemporaryDirectory(prefix="dfkd-fused-") as tmp:
        options = ort.SessionOptions()
        # EXTENDED: every fusion (QDQ -> QLinearConv included) but no NCHWc layout nodes, which
        # only rename Conv into com.microsoft's NCHWc form
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
        options.optimized_model_filepath = os.path.join(tmp, "fused.onnx")
        options.log_severity_level = 3
        ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        graph = onnx.load(options.optimized_model_filepath).graph
    counts = Counter(node.op_type for node in graph.node)
    # a FusedConv is a float Conv with its activation folded in: count it as the Conv it was
    counts["Conv"] += counts.pop("FusedConv", 0)
    return {op: n for op, n in counts.items() if n}


def quantize_for(arch: str, src: str | os.PathLike, dst: str | os.PathLike,
                 scheme: str | None = None, clips: Sequence[np.ndarray] | None = None,
                 op_types: Sequence[str] | None = None) -> dict[str, Any]:
    """int8 ``dst`` from ``src`` with ``scheme`` (default: :func:`default_scheme` of ``arch``).

    ``"static"`` needs ``clips``; ``"dynamic"`` quantises ``op_types`` (default MatMul, LSTM).
    """
    scheme = scheme or default_scheme(arch)
    if scheme not in SCHEMES:
        raise DfkdError(f"--int8-scheme {scheme}: choose from {', '.join(SCHEMES)}")
    if scheme == "static":
        if clips is None:
            raise DfkdError("static int8 needs calibration clips")
        return quantize_static_int8(src, dst, clips, arch=arch)
    return {"scheme": "dynamic", **quantize_int8(src, dst, op_types=op_types)}
