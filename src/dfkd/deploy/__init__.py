"""Deployment, a branch off the model: stream-enhance files, export to ONNX, benchmark on CPU.

``enhance`` (files and folders), ``backends`` (PyTorch or ONNX Runtime model), ``streaming``
(chunked overlap-add), ``stream`` / ``stream_io`` (causal models hop by hop with their state,
PyTorch or an ONNX step graph; files, raw pipes, timing), ``export`` (ONNX, dynamic int8, parity checks), ``quantize`` (static
int8 calibrated on clips, the int8 scheme per architecture), ``bench`` (real-time factor),
``rewrite`` (export-time layer swaps).
"""
