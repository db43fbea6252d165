"""The documented errors of dfnb. Every bad input ends in one of these, never in a bare stack trace.

Each class carries the CLI exit code it maps to, so a script can tell failures apart.
The message always says what was wrong and what to do.
"""

from __future__ import annotations

__all__ = [
    "DfnbError",
    "AudioError",
    "AssetNotFoundError",
    "ChecksumError",
    "ModelError",
    "ModelFolderError",
    "ExportError",
    "StateError",
    "ArgumentError",
]


class DfnbError(Exception):
    """Base class of every error dfnb raises on purpose."""

    exit_code = 1


class AudioError(DfnbError, ValueError):
    """The audio (file or array) cannot be used: missing, unreadable, empty, non-finite, wrong shape."""

    exit_code = 3


class AssetNotFoundError(DfnbError, FileNotFoundError):
    """Weights or a clip could not be found anywhere dfnb looks; the message lists every place tried."""

    exit_code = 4


class ChecksumError(DfnbError):
    """A file exists but its sha256 is not the expected one (corrupt, truncated or a different file)."""

    exit_code = 5


class ModelError(DfnbError):
    """A model cannot be built or filled: unknown name, config and weights disagree, incomplete import."""

    exit_code = 6


class ModelFolderError(ModelError):
    """An exported model folder is missing files, corrupt, inconsistent or of an unknown variant."""

    exit_code = 7


class ExportError(DfnbError):
    """An export cannot be written (target exists without --force, unwritable, verification failed)."""

    exit_code = 8


class StateError(DfnbError, ValueError):
    """A streaming state is missing or has the wrong shape/dtype for the model it is fed to."""

    exit_code = 9


class ArgumentError(DfnbError, TypeError, ValueError):
    """A public function got an argument of the wrong type or range (``threads='2'``, ``chunk=0``,
    ``folder=None``); the message names the argument and what to pass. Also a ``TypeError``/``ValueError``,
    so code that caught those before keeps working."""

    exit_code = 10
