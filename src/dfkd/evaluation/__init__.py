"""Evaluation: score a model or a folder of enhanced files on a test set.

``metrics`` (one clip -> one number per metric, and the metric table: labels, units, decimals),
``composite`` and ``dnsmos`` (two of those metrics), ``scoring`` (many clips in worker processes),
``evaluate`` (run a model or pair folders, then score), ``summary`` (the per-clip scores and their
per_file.csv / summary.json / summary.md).
"""
