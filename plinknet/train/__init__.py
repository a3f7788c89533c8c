"""Training with the paper's recipe (Section 3.2), GPU-first, runs on CPU, scales with torchrun.

- :mod:`~plinknet.train.config`: :class:`TrainConfig`, the recipe, and which fields are the recipe;
- :mod:`~plinknet.train.run`: the run folder (opened safely, never trained over), history and launches;
- :mod:`~plinknet.train.loop`: :func:`train`, :func:`train_or_reuse` and the training step.
"""

from plinknet.train.config import RECIPE_FIELDS, RUN_OPTIONS, TrainConfig, batch_per_process, recipe_changes
from plinknet.train.loop import TrainingDiverged, train, train_or_reuse, train_step
from plinknet.train.run import RunFolderError, read_history

__all__ = [
    "RECIPE_FIELDS", "RUN_OPTIONS", "RunFolderError", "TrainConfig", "TrainingDiverged", "batch_per_process",
    "read_history", "recipe_changes", "train", "train_or_reuse", "train_step",
]  # fmt: skip
