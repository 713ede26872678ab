"""Errors shared by sources and stages (docs/design.md, "Faults")."""


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
