"""Reference implementations shared by the tests and the benchmarks (``benchmarks/*.py`` import them from here).

* :mod:`_helpers.logme_port`: thuml/LogME's released fixed-point solver, ported line by line (numba removed).
* :mod:`_helpers.emms_port`: OpenGVLab/Multitask-Model-Selector's released EMMS.
* :mod:`_helpers.official_sn`: the official ``SwitchNorm2d.forward`` (switchablenorms/Switchable-Normalization).
* :mod:`_helpers.torchreid_port`: torchreid's ``eval_market1501`` with fast-reid's mINP.

They are faithful ports of upstream code, kept apart from pickwise so that a test compares pickwise with the original
and a benchmark times the original; they are not used by the library. ``tests/`` is on ``sys.path`` for the tests
(``pythonpath`` in pyproject.toml) and the benchmarks (``benchmarks/_paths.py``).
"""
