"""ONNX export, onnxruntime parity check, int8 dynamic quantisation and its quality cost.

Models are built from export-friendly layers (see :mod:`dfkd.models.layers`), so the TorchScript
based exporter traces them with a dynamic length axis. Before tracing, :func:`dfkd.deploy.rewrite.
for_export` swaps layers that ONNX Runtime runs slowly for exact equivalents (fused activations,
folded norms, NCHWc-friendly convolutions, a fused attention op). :func:`export_checked` only
publishes a file after onnxruntime reproduced the *original* PyTorch model on two input lengths;
:func:`quantize_int8` applies ``onnxruntime.quantization.quantize_dynamic`` (int8 weights,
activations quantised at run time).

What dynamic quantisation can touch in these models (onnxruntime 1.32): ``Conv`` ->
``ConvInteger``, ``MatMul`` with a constant weight -> ``MatMulInteger`` and ``LSTM`` ->
``DynamicQuantizeLSTM``. By default only ``MatMul`` and ``LSTM`` are quantised
(:data:`DEFAULT_INT8_OPS`): ONNX Runtime's CPU ``ConvInteger`` made every model 4-5x slower than
float ``Conv`` (measured on the 2-core development CPU), so quantising convolutions buys size only.
Convolutions that pay in int8 are quantised statically instead (:mod:`dfkd.deploy.quantize`, which
also picks the scheme per architecture for ``dfkd export --int8``).
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from collections import Counter
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from ..files import atomic_write
from ..errors import DfkdError
from .rewrite import CONTRIB_DOMAIN, for_export, uses_contrib_ops

OPSET = 17
PARITY_LENGTHS: tuple[int, ...] = (16000, 23457)  # one second and an odd length
PARITY_TOLERANCE = 1e-4  # max abs error, onnxruntime vs PyTorch, on inputs of std 0.1
QUANTIZED_OPS = ("ConvInteger", "MatMulInteger", "DynamicQuantizeLSTM")
# Operator types quantised by default: ConvInteger is 4-5x slower than float Conv on CPU.
DEFAULT_INT8_OPS: tuple[str, ...] = ("MatMul", "LSTM")
ALL_INT8_OPS = "all"  # op_types value: every type onnxruntime can quantise (Conv included)
_METADATA_PREFIX = "dfkd."


def model_metadata(model: nn.Module, **extra: Any) -> dict[str, str]:
    """What an ONNX file should carry to be used without the checkpoint: arch, config, rate."""
    model = getattr(model, "module", model)
    meta = {
        "arch": str(getattr(model, "ARCH", type(model).__name__)),
        "config": json.dumps(dict(getattr(model, "config", {})), sort_keys=True, default=str),
        "sample_rate": str(int(getattr(model, "sample_rate", 16000))),
    }
    meta.update({key: str(value) for key, value in extra.items()})
    return meta


def _export_to(model: nn.Module, path: str, example_seconds: float,
               metadata: Mapping[str, str] | None, rewrite: bool = True) -> None:
    if rewrite:  # fast, numerically equivalent layers for ONNX Runtime (dfkd.deploy.rewrite)
        model = for_export(model)
    example = torch.randn(1, int(16000 * example_seconds)) * 0.1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # legacy-exporter deprecation and tracer notes
        torch.onnx.export(
            model,
            (example,),
            path,
            dynamo=False,
            input_names=["noisy"],
            output_names=["enhanced"],
            dynamic_axes={"noisy": {0: "batch", 1: "samples"}, "enhanced": {0: "batch", 1: "samples"}},
            opset_version=OPSET,
            custom_opsets={CONTRIB_DOMAIN: 1} if uses_contrib_ops(model) else None,
            do_constant_folding=True,
        )
    if metadata:
        import onnx

        proto = onnx.load(path)
        for key, value in metadata.items():
            entry = proto.metadata_props.add()
            entry.key, entry.value = _METADATA_PREFIX + key, str(value)
        onnx.save(proto, path)


def export_onnx(model: nn.Module, path: str | os.PathLike, example_seconds: float = 1.0,
                metadata: Mapping[str, str] | None = None, rewrite: bool = True) -> Path:
    """Export ``model`` (``(batch, samples) -> (batch, samples)``) with dynamic batch and length.

    ``metadata`` (e.g. :func:`model_metadata`) is stored in the file's ``metadata_props``.
    ``rewrite=False`` exports the layers as written, without :func:`~dfkd.deploy.rewrite.for_export`
    (a plain-ONNX graph, slower in ONNX Runtime).
    """
    model = model.eval()
    atomic_write(path, lambda tmp: _export_to(model, tmp, example_seconds, metadata, rewrite))
    return Path(path)


def onnx_session(path: str | os.PathLike, threads: int | None = None, device: str = "cpu",
                 spin: bool = False):
    """An onnxruntime session for an exported model (CPU, or CUDA when that provider exists).

    Every graph optimisation is on (operator fusion and the NCHWc layout the rewritten
    convolutions rely on). ``threads`` sets the intra-op pool size. Idle pool threads do not
    busy-wait (``spin=False``): spinning only pays on otherwise idle cores; on the shared 2-core
    development machine it made 2-thread runs 1.3-1.6x *slower*, and in a benchmark that
    alternates engines it lends the next engine's cores to spinning threads.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    if not spin:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3
    providers = ["CPUExecutionProvider"]
    if device.startswith("cuda"):
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            raise DfkdError(f"--device {device}: this onnxruntime has no CUDA provider "
                            "(install onnxruntime-gpu, or use --device cpu)")
        providers.insert(0, "CUDAExecutionProvider")
    try:
        return ort.InferenceSession(str(path), options, providers=providers)
    except Exception as err:  # onnxruntime raises its own Fail/InvalidGraph/... types
        raise DfkdError(f"{path}: not a loadable ONNX model ({err})") from err


def onnx_metadata(session) -> dict[str, str]:
    """The ``dfkd.*`` metadata an exported file carries (prefix removed); empty if none."""
    props = session.get_modelmeta().custom_metadata_map
    return {k[len(_METADATA_PREFIX):]: v for k, v in props.items() if k.startswith(_METADATA_PREFIX)}


def onnx_forward(session, noisy: np.ndarray) -> np.ndarray:
    """Run an exported model on a ``(batch, samples)`` float32 array."""
    return session.run(None, {"noisy": np.ascontiguousarray(noisy, dtype=np.float32)})[0]


# ---------------------------------------------------------------------------------------------
# Parity


def parity_errors(model: nn.Module, path: str | os.PathLike,
                  lengths: Sequence[int] = PARITY_LENGTHS, seed: int = 0) -> dict[int, float]:
    """Max abs difference between onnxruntime and PyTorch outputs, per input length."""
    session = onnx_session(path)
    generator = torch.Generator().manual_seed(seed)
    errors = {}
    for length in lengths:
        noisy = torch.randn(1, int(length), generator=generator) * 0.1
        with torch.inference_mode():
            expected = model.eval()(noisy).numpy()
        got = onnx_forward(session, noisy.numpy())
        if got.shape != expected.shape:
            errors[int(length)] = float("inf")
        else:
            errors[int(length)] = float(np.max(np.abs(got - expected)))
    return errors


def export_checked(
    model: nn.Module,
    path: str | os.PathLike,
    lengths: Sequence[int] = PARITY_LENGTHS,
    tolerance: float = PARITY_TOLERANCE,
    metadata: Mapping[str, str] | None = None,
    rewrite: bool = True,
) -> dict[int, float]:
    """Export, then check onnxruntime against PyTorch on ``lengths``; publish only on success.

    ``rewrite`` as in :func:`export_onnx`; either way the file is compared with ``model`` itself.

    The file is written to a temporary name next to ``path`` and renamed onto ``path`` only when
    every length's max abs error is within ``tolerance``; on failure the temporary file is removed
    and :class:`DfkdError` names the lengths and errors. Returns the errors per length.
    """
    model = model.eval()
    path = Path(path)
    result: dict[int, float] = {}

    def write(tmp: str) -> None:
        try:
            _export_to(model, tmp, 1.0,
                       metadata if metadata is not None else model_metadata(model), rewrite)
        except DfkdError:
            raise
        except Exception as err:  # the exporter raises many kinds for unsupported operators
            raise DfkdError(f"{path}: ONNX export failed ({type(err).__name__}: {err})") from err
        result.update(parity_errors(model, tmp, lengths))
        bad = {n: e for n, e in result.items() if not e <= tolerance}
        if bad:
            listing = ", ".join(f"{n} samples: {e:.3g}" for n, e in bad.items())
            raise DfkdError(f"{path}: onnxruntime differs from PyTorch beyond {tolerance:g} "
                            f"(max abs error {listing}); no file written")

    atomic_write(path, write)
    return result


# ---------------------------------------------------------------------------------------------
# int8


@contextmanager
def _quiet_root_logger() -> Iterator[None]:
    # quantize_dynamic logs a pre-processing hint and a shape-inference note per int64 shape
    # tensor through the root logger; they say nothing about the result.
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def op_counts(path: str | os.PathLike) -> dict[str, int]:
    """Operator type -> count in an ONNX file's main graph."""
    import onnx

    return dict(Counter(node.op_type for node in onnx.load(str(path)).graph.node))


def quantize_int8(src: str | os.PathLike, dst: str | os.PathLike,
                  op_types: Sequence[str] | None = None) -> dict[str, Any]:
    """Dynamic int8 quantisation of ``src`` into ``dst`` (atomic).

    ``op_types`` lists the operator types to quantise; default :data:`DEFAULT_INT8_OPS` (MatMul
    and LSTM, see the module docstring); ``["all"]`` quantises every type onnxruntime can (Conv
    too: smallest file, slowest on CPU). Returns the file sizes and which operators were
    quantised: ``{"fp32_bytes", "int8_bytes", "quantized_ops": {"MatMulInteger": n, ...},
    "float_ops": {"Conv": n, ...}}`` (``quantized_ops`` is empty for a model without such ops).
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    ops = list(op_types) if op_types else list(DEFAULT_INT8_OPS)
    chosen = None if ALL_INT8_OPS in ops else ops  # None: quantize_dynamic's "every type"

    def write(tmp: str) -> None:
        with _quiet_root_logger():
            quantize_dynamic(str(src), tmp, weight_type=QuantType.QInt8,
                             op_types_to_quantize=chosen)

    atomic_write(dst, write)
    counts = op_counts(dst)
    return {
        "fp32_bytes": os.path.getsize(src),
        "int8_bytes": os.path.getsize(dst),
        "quantized_ops": {op: counts[op] for op in QUANTIZED_OPS if op in counts},
        "float_ops": {op: counts[op] for op in ("Conv", "ConvTranspose", "MatMul", "Gemm", "LSTM")
                      if op in counts},
    }


def synthetic_pairs(count: int = 4, seconds: float = 3.0, snr_db: float = 5.0,
                    seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """``(noisy, clean)`` 16 kHz clips of synthetic speech in pink noise, for quick checks."""
    from ..audio import scale_to_snr
    from ..data.demo.noise import colored
    from ..data.demo.speech import synthetic_utterance

    rng = np.random.default_rng(seed)
    pairs = []
    for i in range(count):
        clean = synthetic_utterance(rng, f0=(110.0, 210.0)[i % 2], scale=(1.0, 1.15)[i % 2],
                                    seconds=seconds)
        noise = colored(rng, clean.shape[0], exponent=1.0)
        noisy = clean + scale_to_snr(clean, noise, snr_db)
        pairs.append((noisy.astype(np.float32), clean.astype(np.float32)))
    return pairs


def corpus_test_pairs(root: str | os.PathLike, limit: int = 8,
                      sample_rate: int = 16000) -> list[tuple[np.ndarray, np.ndarray]]:
    """Up to ``limit`` ``(noisy, clean)`` test clips of a corpus (any layout ``dfkd.data.datasets`` reads)."""
    from ..audio import load_mono
    from ..data.layouts import corpus_pairs

    pairs = corpus_pairs(root, "test")[:limit]
    return [(load_mono(p.noisy, sample_rate, cache=False), load_mono(p.clean, sample_rate, cache=False))
            for p in pairs]


def compare_quality(
    reference_path: str | os.PathLike,
    candidate_path: str | os.PathLike,
    pairs: Sequence[tuple[np.ndarray, np.ndarray]],
    metrics: Sequence[str] = ("pesq_wb", "si_snr"),
    sample_rate: int = 16000,
) -> dict[str, Any]:
    """Mean scores of two ONNX models (fp32 reference, int8 candidate) on the same clips.

    Returns ``{"reference": {...}, "candidate": {...}, "delta": {...}, "agreement_si_snr": dB,
    "clips": n}``; ``agreement_si_snr`` is the candidate's SI-SNR against the reference's output
    (how closely int8 follows fp32, independent of how good the model is). Clips that a metric
    cannot score (e.g. PESQ on silence) are left out of every mean.
    """
    from ..evaluation.metrics import MetricError, score_clip, si_snr

    sessions = [onnx_session(reference_path), onnx_session(candidate_path)]
    scores: list[list[dict[str, float]]] = [[], []]
    agreement = []
    for noisy, clean in pairs:
        outputs = [onnx_forward(s, noisy[None])[0] for s in sessions]
        try:
            clip_scores = [score_clip(y, clean, noisy, sample_rate, list(metrics)) for y in outputs]
        except MetricError:
            continue
        for i in range(2):
            scores[i].append(clip_scores[i])
        agreement.append(si_snr(outputs[1], outputs[0], sample_rate))
    if not agreement:
        raise DfkdError("no clip could be scored for the int8 quality check")
    means = [{m: float(np.mean([s[m] for s in side])) for m in metrics} for side in scores]
    return {
        "reference": means[0],
        "candidate": means[1],
        "delta": {m: means[1][m] - means[0][m] for m in metrics},
        "agreement_si_snr": float(np.mean(agreement)),
        "clips": len(agreement),
    }
