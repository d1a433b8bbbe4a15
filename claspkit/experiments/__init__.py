"""Experiments: the stages the notebooks run, end to end (``pipeline``: corpus, features, training, scoring,
each cached and resumable). The top layer: it uses every subpackage and none uses it but the benchmarks,
the robustness study and the notebooks.
"""

__all__: list = []      # a package of modules: ``from claspkit.experiments import pipeline``
