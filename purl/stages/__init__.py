"""The stage modules: the only code that knows the data/ and exp/ layouts.

The rule of the project's folders:

- Algorithm modules (``purl/*.py`` and packages outside ``purl/stages/``) take
  arrays and single files: a matrix of embeddings, one ark, one checkpoint, one
  data dir read through :mod:`purl.data.datadir` (the Kaldi data-dir format).
- ``purl/stages/<stage>.py`` alone knows where a stage's inputs and outputs lie
  (``exp/<model>/embeddings/<set>/xvector.scp``, ``reliability/report.json``,
  ``scores/``, the settings records beside outputs) and decides what to skip.
- ``steps/*.py``, ``utils/*.py`` and ``local/*.py`` only parse their arguments and
  call a stage or library function, through :func:`purl.entry.run_main`.

tests/test_layout_rule.py enforces the first two points for the names it knows.

Modules: features (stage 1), noise (stage 2), training (stages 3 and 5),
reliability (stage 4), embeddings (extraction job plans and merges), filtering
(the filtering baseline), scoring (stage 6 and the summary table), calibration
(stage 6: scores to log-likelihood ratios).
"""
