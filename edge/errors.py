"""Errors of the edge core, one base per layer.

MenweiError
├── ConfigError            a config file or secret is missing or invalid (names the key and the file)
├── StoreError             the SQLite store failed or holds something unexpected
│   ├── MigrationError     the schema cannot be brought to the version this code needs
│   └── AuditError         the event log's hash chain is broken (names the first broken link)
├── AccessListError        an access list (snapshot or delta) is inconsistent
└── DeviceError            a driver could not talk to its device (see drivers.errors)
"""

from __future__ import annotations


class MenweiError(Exception):
    """Base of every error menwei raises on purpose."""


class ConfigError(MenweiError):
    """A config file, key or secret is missing or invalid."""


class StoreError(MenweiError):
    """The durable store failed."""


class MigrationError(StoreError):
    """The database schema cannot be migrated to the version this code needs."""


class AuditError(StoreError):
    """The event log's hash chain does not verify."""


class AccessListError(MenweiError):
    """An access list refers to something that does not exist or is otherwise inconsistent."""


class DeviceError(MenweiError):
    """A device driver failed to talk to its device."""
