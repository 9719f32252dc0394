"""User-facing errors.

Every mistake a user can make (a missing file, a bad config field, a corrupt checkpoint)
raises a subclass of :class:`LmforgeError`. The CLI prints its message on one line and
exits with code 2; a traceback is shown only with ``--debug``. Library callers catch
``LmforgeError`` to tell user errors from bugs.
"""

from __future__ import annotations


class LmforgeError(Exception):
    """Base class of all errors caused by user input (exit code 2 in the CLI)."""


class ConfigError(LmforgeError):
    """A recipe or override is invalid: unknown field, wrong type, out-of-range value."""


class DataError(LmforgeError):
    """Input data is missing, empty, unreadable or not valid UTF-8."""


class CheckpointError(LmforgeError):
    """A checkpoint or model folder is missing, truncated, corrupt or incompatible."""


class TrainingError(LmforgeError):
    """Training cannot go on (for example the loss became NaN or infinite)."""


class ModelInputError(DataError, ValueError):
    """A tensor given to a model's ``forward`` has the wrong type, shape or dtype, or holds
    token ids outside the vocabulary. Also a ``ValueError`` for library callers."""
