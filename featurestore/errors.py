"""The exceptions featurestore raises. Every one is a `FeatureStoreError`.

Messages say what was wrong, where (file, object, field, value) and, when we can tell, what to do.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class FeatureStoreError(Exception):
    """Base class of every error featurestore raises on purpose."""


class ConfigError(FeatureStoreError):
    """featurestore.toml or an environment override is missing or invalid."""


class DefinitionError(FeatureStoreError):
    """A definition (entity, source, feature view, service) is invalid."""


class RepoError(FeatureStoreError):
    """The feature repo as a whole could not be loaded or validated; lists every problem found."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"the feature repo has {len(self.problems)} problem(s):\n{lines}")


class NotAppliedError(FeatureStoreError):
    """An operation needs definitions that have not been applied to the registry."""


class UnknownNameError(FeatureStoreError, KeyError):
    """A name (feature, view, service, source, model) that does not exist."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class RetrievalError(FeatureStoreError):
    """A training-set or online request is malformed (missing column, name collision, ...)."""


class MaterializationError(FeatureStoreError):
    """Materialization was refused or failed; nothing was recorded as done."""


class PushError(FeatureStoreError):
    """A pushed batch was refused whole; nothing was written."""


class CorruptOfflineFileError(FeatureStoreError):
    """A day file of offline storage cannot be read (truncated, garbage bytes, a foreign schema).

    `path`: the file; `view`, `day`: what it held; `quarantined_to`: where it was moved (pushed rows,
    which no source can rebuild, are moved aside, never deleted), or None (materialized rows: a
    materialization of that day rebuilds it from the source)."""

    def __init__(self, message: str, view: str, path: str, day: str, quarantined_to: str | None = None):
        super().__init__(message)
        self.view, self.path, self.day, self.quarantined_to = view, path, day, quarantined_to


class ObjectStorageError(FeatureStoreError):
    """Object storage (an s3:// location) cannot be used: no such bucket, the endpoint unreachable,
    no or wrong credentials, access denied. The message names the URL and the settings to check."""


class RegistryError(FeatureStoreError):
    """The registry cannot be used: its file is corrupt or unreadable, busy past the timeout, or
    from a newer schema. The message names the file and what to do (restore from a backup)."""


class OnlineStoreUnavailable(FeatureStoreError):
    """The online store cannot be reached (connection refused, timeout)."""


class ModelRegistryError(FeatureStoreError):
    """A model registry operation failed (unknown version, tampered artifact, bad signature, ...)."""


class TransformError(FeatureStoreError):
    """An on-demand feature view's function raised, or returned what its schema cannot take: the
    lookup (HTTP 500, code `transform_error`) or the training set fails, naming the view and row."""


class MonitoringError(FeatureStoreError):
    """Monitoring cannot answer: no training set to compare with, a bad window, bad feedback rows."""


class LogWriteError(MonitoringError):
    """The prediction or feedback log cannot be written (log_path is a file, unwritable, disk full):
    the server's trouble, not the request's (HTTP 503, where a MonitoringError is a 422)."""


class PermissionDeniedError(FeatureStoreError):
    """The acting user or API key's role does not allow the action (HTTP 403); see featurestore.governance."""


class PipelineError(FeatureStoreError):
    """A training pipeline run cannot start or go on (another run holds the model, a bad spine range,
    a train function that returned no model); see featurestore.pipelines."""


class DefinitionsChangedError(FeatureStoreError):
    """An on-demand feature view's function on disk no longer matches the source hash recorded at
    apply (HTTP 409): the store will not serve code that was never applied. Run `fs apply` again."""


def did_you_mean(name: str, candidates: Iterable[str]) -> str:
    """A ' (did you mean 'x'?)' suffix when a close candidate exists, else a list of the known ones."""
    candidates = sorted(set(candidates))
    close = difflib.get_close_matches(name, candidates, n=1, cutoff=0.6)
    if close:
        return f" (did you mean '{close[0]}'?)"
    if not candidates:
        return ""
    shown = ", ".join(f"'{c}'" for c in candidates[:10])
    more = "" if len(candidates) <= 10 else f", ... ({len(candidates)} in all)"
    return f" (known: {shown}{more})"


def unknown(kind: str, name: str, candidates: Iterable[str]) -> UnknownNameError:
    """An UnknownNameError for `name` of `kind`, with a suggestion."""
    return UnknownNameError(f"unknown {kind} '{name}'{did_you_mean(name, candidates)}")
