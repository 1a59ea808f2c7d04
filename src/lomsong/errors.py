"""One tree of errors for the whole project.

Every error lomsong raises on purpose is a ``LomsongError``; the CLI prints its message as one
line on stderr and exits non-zero, and the collector turns the ones that reach an HTTP handler
into 4xx answers. The kernel defines the branches every wing shares; a wing's own errors live
with the wing and are named below with their module.

    LomsongError
    ├── ConfigError          a setting or configuration file is invalid
    ├── StorageError         the database cannot be opened, migrated or written
    │   ├── MigrationError   the schema is not at the version this code expects
    │   └── StorageUnavailable  the database is away, locked, out of space or failing just
    │                        now; the same request may succeed later (the collector: 503)
    ├── NotFoundError        a probe, token, province or commune that does not exist
    ├── ConflictError        something with that id already exists
    ├── ValidationError      bad input that is not configuration (CLI arguments, API bodies)
    ├── GeodataError         a geodata file cannot be read or has no usable rows
    │   └── MissingFileError  the file named does not exist
    ├── SpoolError           the probe's spool cannot be opened or written
    ├── DemoError            the demo ran but its scenario's expectations did not hold
    │                        (lomsong.demo.run)
    ├── IngestRejected       a report batch refused before anything was stored, with its HTTP
    │                        status and reason (lomsong.collector.ingest)
    └── DeliveryError        a receiver could not deliver a notification; says whether trying
                             again may help (lomsong.collector.alerts.model)
"""

from __future__ import annotations


class LomsongError(Exception):
    """Base of every error lomsong raises on purpose."""


class ConfigError(LomsongError):
    """A setting or configuration file is invalid."""


class StorageError(LomsongError):
    """The database cannot be opened, migrated or written."""


class MigrationError(StorageError):
    """The database schema is not at the revision this code expects."""


class StorageUnavailable(StorageError):
    """The database cannot be used just now: unreachable, locked, out of space or failing.

    Not a fault of the request nor of the code: the same request may succeed later, so the
    collector answers 503 with ``Retry-After``. ``kind`` is one short word for the cause
    (``lomsong.storage.database.UNAVAILABLE_KINDS``); the message is one line without the
    connection string.
    """

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


class NotFoundError(LomsongError):
    """A probe, token, province or commune that does not exist."""


class ConflictError(LomsongError):
    """Something with that identifier already exists."""


class ValidationError(LomsongError):
    """Bad input that is not configuration: CLI arguments, API bodies, files."""

    def __init__(self, field: str, value: object, problem: str) -> None:
        self.field = field
        self.value = value
        self.problem = problem
        super().__init__(f"{field}: {problem} (got {value!r})")


class GeodataError(LomsongError):
    """A geodata file cannot be read or holds no usable rows."""


class MissingFileError(GeodataError):
    """The file named (on the command line) does not exist."""


class SpoolError(LomsongError):
    """The probe's spool cannot be opened or written."""
