"""Search methods compared at equal cost.

:mod:`~rlprune.search.base` says what a method is and writes the steps every method
shares; one module per family holds the methods (``agents``, ``random_search``,
``optuna_search``, ``heuristics``, ``transfer``); :mod:`~rlprune.search.methods` is the
registry (name -> method) that the CLI and the benchmark read;
:mod:`~rlprune.search.benchmark` compares methods at equal cost.
"""
