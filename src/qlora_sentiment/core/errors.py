# output-neutral: exception classes only; what they say is not a stage output
"""Errors a user can act on: each carries one line that names the key, file or row and the fix."""


class QloraError(Exception):
    """Base class: the CLI prints `error: <message>` and exits 2, without a traceback unless --debug."""


class ConfigError(QloraError):
    """A params.yaml key is unknown, of the wrong type or out of range."""


class DataError(QloraError):
    """A dataset file, column or row cannot be used."""


class ModelError(QloraError):
    """A base model or adapter cannot be resolved or loaded as asked."""
