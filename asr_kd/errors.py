"""Errors a user can act on. The command line prints them as one line (what, where, what to do)
and exits with status 2; anything else is a bug and keeps its traceback. ``HYDRA_FULL_ERROR=1``
shows the traceback of these too.
"""

from __future__ import annotations

__all__ = ["UserError", "ConfigError", "DataError", "MissingFileError", "MissingUpstreamError",
           "StaleUpstreamError", "ChecksumError", "UnreadableFileError", "UnsafeFileError"]


class UserError(Exception):
    """Bad input, a bad setting or a stage run out of order: the message says what to do."""


class ConfigError(UserError, ValueError):
    """A setting has the wrong type, an unknown key or an impossible value."""


class MissingUpstreamError(UserError, RuntimeError):
    """A stage's input has not been produced yet."""


class StaleUpstreamError(UserError, RuntimeError):
    """A stage's input on disk was made with other settings than the ones configured now."""


class DataError(UserError, ValueError):
    """An input file or its contents cannot be used (named with its path, and line where known)."""


class MissingFileError(UserError, FileNotFoundError):
    """A file a stage or tool needs does not exist."""


class ChecksumError(DataError):
    """A file's bytes differ from the checksum recorded when it was written (asr_kd.integrity)."""


class UnreadableFileError(DataError):
    """A file is truncated or is not in the format expected (a checkpoint that torch cannot read)."""


class UnsafeFileError(DataError):
    """A checkpoint holds Python objects that loading it would call: refused, never unpickled."""
