"""Named errors for user mistakes.

Every error a user can cause (a malformed file, an unknown id, a bad option) is one of these.
The message names the file, column or id, the bad value or count, and what to do; the CLI
prints it as one line and exits with code 2. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class RecsysError(Exception):
    """Base class of every error caused by input rather than by a bug."""


class DataValidationError(RecsysError):
    """A data file or frame breaks the expected schema or content."""


class DataSourceError(RecsysError):
    """A data set could not be fetched or a download failed its checksum."""


class UnknownIdError(RecsysError, KeyError):
    """A user, item or task id that the model or data does not know."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class ConfigError(RecsysError):
    """An unknown key or an invalid value in a configuration or command-line option."""


class CheckpointError(RecsysError):
    """A checkpoint or published model is missing, corrupt or does not match its manifest."""
