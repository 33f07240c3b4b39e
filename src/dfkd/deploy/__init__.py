"""Deployment, a branch off the model: stream-enhance files, export to ONNX, benchmark on CPU.

``enhance`` (files and folders), ``backends`` (PyTorch or ONNX Runtime model), ``streaming``
(chunked overlap-add), ``export`` (ONNX, int8, parity checks), ``bench`` (real-time factor),
``rewrite`` (export-time layer swaps).
"""
