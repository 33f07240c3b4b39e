"""Training: a :class:`~dfkd.training.config.TrainConfig` in, a run folder out.

``config`` (the keys of ``dfkd train``), ``run`` (check the inputs and set a run up:
:func:`~dfkd.training.run.run_training`), ``trainer`` (the loop), ``batches`` (datasets and
validation set), ``log`` (history and progress).
"""
