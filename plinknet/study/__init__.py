"""The study around the method: the paper's question asked over seeds, the metric's two readings, the lab.

- :mod:`~plinknet.study.ablation`: P-LinkNet against LinkNet34 over seeds, archived with provenance;
- :mod:`~plinknet.study.stats`: paired gaps, intervals, power and the verdict;
- :mod:`~plinknet.study.protocol`: which scoring protocol reproduces the paper's numbers;
- :mod:`~plinknet.study.lab`: error analysis on the synthetic sample's instance and look-alike labels.

Nothing in the method (:mod:`plinknet` outside this folder) imports it; ``lint-imports`` checks that.
"""
