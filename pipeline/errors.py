"""Errors shared by sources and stages (docs/design.md, "Faults")."""

import gzip
from dataclasses import dataclass


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


UNEXPECTED = "unexpected error"  # the prefix of a reason that no rule of ours foresaw (counted in the manifest)


@dataclass(frozen=True)
class Fault:
    """How one case's failure is handled (docs/design.md, "Faults"): a transient one fails the job
    after its batch so that a rerun retries the case; any other is the case's permanent failure,
    recorded with `reason`. `unexpected` names the exception type when it was not a CaseError,
    i.e. a fault no rule foresaw (or a bug of ours): still the case's, never the batch's, but counted."""

    transient: bool
    reason: str
    unexpected: str | None = None

    def status(self, stage: str) -> dict:
        """The batch status entry of a permanent fault."""
        entry = {"status": "failed", "stage": stage, "reason": self.reason}
        return entry | ({"unexpected": self.unexpected} if self.unexpected else {})


def classify(e: Exception) -> Fault:
    """The one place where a case's exception is classified: `is_transient` says transient
    (network, timeouts, 5xx, a full disk); a CaseError is the case's permanent fault with its
    message; anything else raised while reading, validating or resampling a case is permanent too,
    recorded as "unexpected error: <type>: <message>"."""
    if is_transient(e):
        return Fault(True, str(e) if isinstance(e, TransientError) else f"{type(e).__name__}: {e}")
    if isinstance(e, CaseError):
        return Fault(False, str(e))
    name = type(e).__name__
    return Fault(False, f"{UNEXPECTED}: {name}: {e}", name)
