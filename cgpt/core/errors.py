"""User-facing errors: one line that names what was wrong, where, and what was expected.

Stages and the CLI catch :class:`CgptError` and print ``error: <message>`` without a traceback;
anything else is a bug and keeps its traceback.
"""


class CgptError(Exception):
    """A problem the user can fix (bad params, missing file, bad input, failed download)."""


class ConfigError(CgptError):
    """params.yaml (or a preset) is invalid."""


class DataError(CgptError):
    """Input data is malformed, missing, or failed verification."""


class TrainingError(CgptError):
    """Training cannot go on (the loss diverged, no usable device, a checkpoint cannot be written)."""


class ScalingError(CgptError):
    """Points cannot be fitted or compared (too few, non-positive, mismatched; an unknown card size)."""
