"""Errors a user can act on; the CLI prints them as one stderr line."""


class NeuroKDError(Exception):
    """A problem with the user's input or files (CLI exit code 2)."""

    exit_code = 2


class ConfigError(NeuroKDError):
    """An option or TOML value is missing, unknown or out of range."""


class DataError(NeuroKDError):
    """A data set cannot be found or read in the expected format."""


class CheckpointError(NeuroKDError):
    """A checkpoint file is missing, unreadable or not a neurokd checkpoint."""


class TrainingError(NeuroKDError):
    """Training could not go on (for example a non-finite loss)."""

    exit_code = 1


class WriteError(NeuroKDError):
    """A file could not be written (disk full, no permission): a runtime failure, exit 1."""

    exit_code = 1


class ExternalToolError(NeuroKDError):
    """A tool neurokd drives crashed or misbehaved (the Lava subprocess, a consumer library):
    not the user's input, so exit 1, with what failed."""

    exit_code = 1


class ToolMissing(ExternalToolError):
    """A check the user asked for needs a tool that is not installed (the Lava environment):
    exit 1, nothing written, with how to install it; the CLI adds how to skip the check."""


class Interrupted(NeuroKDError):
    """Training stopped on a signal after saving its state (exit 130 for SIGINT, 143 for TERM):
    the CLI says so without calling it an error."""

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.exit_code = 128 + signum
