"""Errors shared by sources and stages (docs/design.md, "Faults")."""

import gzip


class CaseError(Exception):
    """A case cannot be used; the message is the recorded reason (a permanent skip)."""


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the key."""


class TransientError(Exception):
    """A fault that a later run may not meet (network, timeouts, 5xx, a full disk): the job finishes
    the other cases of its batch, then fails naming the affected cases, so a rerun retries them."""


class FailedFractionError(Exception):
    """Too many cases of a batch failed permanently (download.max_failed_fraction); the message
    says what is common to them (a wrong URL, wrong track names)."""


def is_transient(e: BaseException) -> bool:
    """The network or the machine, not the case: a TransientError, or an OSError other than a file
    that is not valid gzip (that one is the case's own, permanent fault)."""
    return isinstance(e, TransientError) or (isinstance(e, OSError) and not isinstance(e, gzip.BadGzipFile))
