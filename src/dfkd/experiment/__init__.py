"""The comparison grid (``dfkd experiment``) and its report.

``config`` (the YAML), ``plan`` (the cells and their run-folder hashes), ``runner`` (obtain and
score every cell), ``results`` (tables' numbers from the scored cells), ``tables`` / ``plots`` /
``html`` (results.md, figures, report.html), ``report`` (everything the report adds: sizes,
crossover histograms, listening clips).
"""
