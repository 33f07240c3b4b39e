"""Export-time rewrites: layers swapped for equivalents that ONNX Runtime runs fast on CPU.

The models are written for training and PyTorch eager. Some of their layers export to ONNX graphs
that ONNX Runtime's CPU provider runs slowly (measured with its profiler on the ``paper`` and
``student`` presets; see ``README.md, "Deployment"``). :func:`for_export` returns an eval-mode
copy of a model in which those layers are replaced by modules that compute the same function
(float rounding aside) and export to faster operators. The model files stay untouched, training
never sees these modules, and :func:`dfkd.deploy.export.export_checked` still compares the exported graph
with the *original* model.

=========================== ============================= =========================================
layer                       exported as before            exported as now (why)
=========================== ============================= =========================================
``nn.PReLU``, one slope     ``PRelu``                     ``LeakyRelu(alpha=slope)``, fused into the
                                                          Conv before it (ORT's PRelu is a generic
                                                          broadcasting kernel: 36 % of Conv-TasNet)
Conv-TasNet TCN             ``Conv`` on 1-D ``(B, C, T)`` ``Conv`` on ``(B, C, 1, T)``, which ORT
                                                          runs in its blocked NCHWc layout (about
                                                          twice as fast, Add/activation fused)
Conv-TasNet gLN before a    InstanceNormalization, then   gamma/beta folded into the 1x1 conv
1x1 conv                    Mul, Add                      weights (two passes fewer)
DPTNet ``SelfAttention``    MatMul, Mul, Softmax, MatMul, q/k/v MatMuls + ``com.microsoft.
                            Transposes, Split             MultiHeadAttention`` (ORT's fused flash
                                                          attention kernel, bias folded in)
DPTNet LSTM + Linear        Transpose, LSTM, Transpose,   bare LSTM; the Linear applied per
                            Reshape, Transpose, MatMul    direction on its sequence-first output
                                                          (two transposes of the 2H-wide output
                                                          fewer per layer)
DPTNet channel-last gLN     Transpose, Reshape, Instance- Reshape, InstanceNormalization, Reshape,
                            Normalization, ..., Transpose Mul, Add (no transposes)
DCCRN encoder / decoder     (Transposed) Conv of weights  BatchNorm folded into the weights; each of
blocks, output layer        concatenated at run time,     the real / imaginary halves one ``Conv``
                            BatchNormalization, PRelu     with a fused ``LeakyRelu``; transposed
                                                          convs in polyphase form (ORT's
                                                          ConvTranspose was 58 % of DCCRN's time)
=========================== ============================= =========================================

Tried and left out: ``LayerNormalization(axis=1)`` for gLN (one op instead of five, but ORT's
kernel was slower than InstanceNormalization on Conv-TasNet's long rows and no faster in DPTNet,
and it computes the variance as E[x^2] - E[x]^2 in float32); the LSTM as an ONNX ``Scan`` (1.5x
slower than ORT's LSTM). ORT's LSTM kernel itself stays 1.1-1.5x slower than PyTorch's oneDNN LSTM
on DPTNet's shapes (per-row gate activations), which is why DPTNet gains least.

``com.microsoft`` operators make the file ONNX-Runtime specific (which ``dfkd enhance`` and any
onnxruntime install run); ``for_export(model, contrib_ops=False)`` keeps to standard ONNX.

The replacement modules live in :mod:`dfkd.deploy.rewrite.sequence` (PReLU, gLN, Conv-TasNet's
TCN, DPTNet's attention and LSTM) and :mod:`dfkd.deploy.rewrite.complex` (DCCRN's complex convs);
this module picks which applies where and re-exports their public names.
"""

from __future__ import annotations

import copy

from torch import nn

from .complex import FoldedComplexConv, transposed_conv_as_conv
from .sequence import (
    CONTRIB_DOMAIN,
    ChannelLastGlobalLayerNorm,
    Conv1dAs2d,
    FusedSelfAttention,
    LeakyReLUFromPReLU,
    PlainGlobalLayerNorm,
    RunAs2d,
    SequenceFirstDualPathLayer,
    fold_gln_into_pointwise,
)
from ...models.complex_layers import ComplexConv2d, ComplexConvTranspose2d, ComplexPReLU
from ...models.conv_tasnet import TCNMasker, TemporalBlock
from ...models.dccrn import DecoderBlock, EncoderBlock
from ...models.dptnet import DualPathLayer, SelfAttention
from ...models.layers import FreeDecoder

__all__ = [
    "CONTRIB_DOMAIN", "ChannelLastGlobalLayerNorm", "Conv1dAs2d", "FoldedComplexConv",
    "FusedSelfAttention", "LeakyReLUFromPReLU", "PlainGlobalLayerNorm", "RunAs2d",
    "SequenceFirstDualPathLayer", "fold_gln_into_pointwise", "for_export",
    "transposed_conv_as_conv", "uses_contrib_ops",
]


def for_export(model: nn.Module, contrib_ops: bool = True) -> nn.Module:
    """An eval-mode deep copy of ``model`` with every known layer swapped for its fast equivalent.

    ``contrib_ops=False`` leaves out rewrites that need ONNX Runtime's ``com.microsoft`` operators.
    The original ``model`` is not modified.
    """
    model = copy.deepcopy(getattr(model, "module", model)).eval()
    _swap_children(model, contrib_ops)
    return model


def uses_contrib_ops(model: nn.Module) -> bool:
    """Whether exporting ``model`` emits ``com.microsoft`` operators (the exporter must know)."""
    return any(getattr(m, "CONTRIB_OPS", False) for m in model.modules())


def _swap_children(parent: nn.Module, contrib_ops: bool) -> None:
    for name, child in parent.named_children():
        replacement = _replacement(child, contrib_ops)
        if replacement is not None:
            setattr(parent, name, replacement)
        else:
            _swap_children(child, contrib_ops)


def _replacement(module: nn.Module, contrib_ops: bool) -> nn.Module | None:
    if isinstance(module, ComplexPReLU):
        # left whole (returned as is, so not descended into): its forward reads re.weight and
        # im.weight, which a LeakyReLU in their place would not have (a DCCRN block whose
        # BatchNorm keeps no running statistics is not folded and reaches here)
        return module
    if isinstance(module, nn.PReLU) and module.weight.numel() == 1:
        return LeakyReLUFromPReLU(module)
    if isinstance(module, FreeDecoder):
        # the training-time matmul + overlap-add form would export as a MatMul that int8
        # quantises; ONNX Runtime runs the transposed conv well and keeps it float32
        module.overlap_add = False
        return module
    if isinstance(module, TemporalBlock):
        fold_gln_into_pointwise(module, "dw_norm", ["res_conv", "skip_conv"])
    if isinstance(module, TCNMasker):
        fold_gln_into_pointwise(module, "in_norm", ["bottleneck"])
        _swap_children(module, contrib_ops)
        return RunAs2d(module)
    if isinstance(module, DualPathLayer):
        # a causal inter-chunk layer (masked attention, cLN) is left whole: both rewrites
        # assume full attention and gLN
        return module if module.causal else SequenceFirstDualPathLayer(module, contrib_ops)
    if isinstance(module, SelfAttention) and contrib_ops:
        return FusedSelfAttention(module)
    if isinstance(module, (EncoderBlock, DecoderBlock)):
        return FoldedComplexConv.from_block(module)
    if isinstance(module, (ComplexConv2d, ComplexConvTranspose2d)):
        return FoldedComplexConv.from_conv(module, None, None)
    return None
