"""Exceptions raised at pickwise's public boundary.

Every exception here subclasses a Python built-in (as scikit-learn does), so ``except ValueError`` keeps working,
and also :class:`PickwiseUserError`, which marks "the user gave us something wrong": the command-line interface
catches exactly these, prints their one-line message and exits with status 2. Anything else is a bug and keeps
its traceback.
"""

from __future__ import annotations

__all__ = [
    "CheckpointError",
    "ConfigError",
    "DataFormatError",
    "DataNotFoundError",
    "InvalidParameterError",
    "NotFittedError",
    "PickwiseUserError",
    "RunFolderError",
    "RunLockedError",
    "ShapeError",
    "TrainingDivergedError",
    "UnknownNameError",
    "WeightsIntegrityError",
]


class PickwiseUserError(Exception):
    """Marker base class: an error caused by user input, reported in one line by the CLI."""


class InvalidParameterError(PickwiseUserError, ValueError, TypeError):
    """A parameter has the wrong type or value."""


class UnknownNameError(InvalidParameterError):
    """A registry lookup (model, dataset, norm, ...) found no entry; the message lists close matches."""


class ConfigError(InvalidParameterError):
    """A configuration file or ``--set key=value`` override is invalid."""


class ShapeError(PickwiseUserError, ValueError):
    """An array or tensor has the wrong shape."""


class NotFittedError(PickwiseUserError, ValueError, AttributeError):
    """An estimator was used before ``fit``."""


class DataNotFoundError(PickwiseUserError, FileNotFoundError):
    """A dataset's files are missing; the message says how to get them."""


class DataFormatError(PickwiseUserError, ValueError):
    """Dataset files exist but cannot be used as they are (empty folder, unreadable image, mixed sizes...)."""


class CheckpointError(PickwiseUserError, ValueError):
    """A checkpoint is missing, truncated, corrupt or does not fit the model."""


class TrainingDivergedError(PickwiseUserError, FloatingPointError):
    """The training loss or the weights became NaN or infinite (usually: learning rate too high for the setup)."""


class RunFolderError(PickwiseUserError, FileExistsError):
    """A run folder already holds another run (start with ``--resume`` or ``--overwrite``, or pick another name)."""


class RunLockedError(RunFolderError):
    """Another process is training into the same run folder; the message names its pid."""


class WeightsIntegrityError(CheckpointError):
    """Shipped weights do not match their recorded sha256."""
