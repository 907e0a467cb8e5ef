"""User-facing errors: printed as one clear message (no traceback) and a non-zero exit."""

from __future__ import annotations


class TuneforgeError(Exception):
    """Base of every error caused by user input or environment, not by a bug."""

    exit_code = 2


class ConfigError(TuneforgeError):
    """The composed config is invalid: a typo'd key, a wrong type, an unknown option or a bad value."""


class ModelLoadError(TuneforgeError):
    """The model (or its tokenizer) cannot be loaded."""


class DataError(TuneforgeError):
    """The dataset cannot be read or is invalid."""


class LaunchError(TuneforgeError):
    """The launch failed or was refused."""


class RunArtifactError(TuneforgeError):
    """A run directory's artifacts cannot be used: missing, corrupted, or not matching the run's base model."""


class TrainingFailedError(TuneforgeError):
    """Training ran but produced garbage (a NaN/inf loss, losses stuck at exactly 0): the run is FAILED."""

    exit_code = 1
