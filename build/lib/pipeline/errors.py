"""Errors shared by sources and stages (docs/design.md, "Faults")."""


class CaseError(Exception):
    """A case cannot be used; the message is the recorded reason (a permanent skip)."""


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the key."""
