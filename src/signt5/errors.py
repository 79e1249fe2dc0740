"""The project's own errors, below every other layer: each names the file (and sample) it is about."""

from __future__ import annotations


class SignT5Error(Exception):
    """Base class: a problem the user can fix, reported without a traceback by the CLI."""


class PoseDataError(SignT5Error, ValueError):
    """A pose file or sample that cannot be read or used as it is."""

    def __init__(self, message: str, source: str | None = None, sample_id: str | None = None):
        self.source = source
        self.sample_id = sample_id
        where = []
        if source:
            where.append(str(source))
        if sample_id is not None:
            where.append(f"sample {sample_id!r}")
        super().__init__(f"{', '.join(where)}: {message}" if where else message)


class LayoutError(SignT5Error, ValueError):
    """A keypoint layout that is unknown or does not fit the data."""


class ManifestError(SignT5Error, ValueError):
    """A manifest (CSV/JSONL) with missing columns or bad rows."""


class UnsafePickleError(PoseDataError):
    """A pickle that asks for anything beyond plain containers and numpy arrays."""


class VideoError(PoseDataError):
    """A video that cannot be read, or in which pose estimation finds no person."""


class MissingDependencyError(SignT5Error, ImportError):
    """An optional package that a command needs is not installed; the message says how to install it."""


class TrainingError(SignT5Error):
    """A run that cannot go on (diverged, no data, out of memory); the last good checkpoint is kept."""
