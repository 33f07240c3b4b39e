"""Deployment, a branch off the model: stream-enhance files, export to ONNX, benchmark on CPU.

``enhance`` (files and folders), ``backends`` (PyTorch or ONNX Runtime model), ``streaming``
(chunked overlap-add), ``stream`` / ``stream_io`` (causal models hop by hop with their state,
PyTorch or an ONNX step graph; files, raw pipes, timing), ``export`` (ONNX, int8, parity checks), ``bench`` (real-time factor),
``rewrite`` (export-time layer swaps).
"""
