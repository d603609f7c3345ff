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

Modules, named as the steps that call them: fbank (stage 1, make_fbank.sh),
simulate_noise (stage 2), training (stages 3 and 5, train.py) and exp_layout
(the layout of a training run's exp dir), reliability (stage 4), embeddings
(extraction job plans and merges), filter_data_dir (the filtering baseline),
relabel_data_dir (relabel proposals), clean (``purl clean``), score (stage 6
and the summary table), calibrate (stage 6: scores to log-likelihood ratios),
benchmark (the noisy-label benchmark's table).
"""
