"""The gateway's durable store: one SQLite file (WAL) holding the access list, small state and the event log.

- db: `open_db` (pragmas + migrations) and `transaction` (compose writes into one transaction)
- migrations: numbered schema steps tracked in PRAGMA user_version
- access_store: atomic snapshot replace / load of the access list, and deltas for the cloud sync
- state: a key/value table for state that must survive a restart
- event_log: `EventLog`, the hash-chained log with one group-committing writer thread, and its outbox reads
- audit: `verify_chain`, which names the first broken link of the chain
"""

from edge.store.access_store import (
    access_list_version,
    delete_credential,
    delete_pass,
    delete_person,
    delete_rule,
    load_access_list,
    save_access_list,
    set_version,
    upsert_credential,
    upsert_pass,
    upsert_person,
    upsert_rule,
)
from edge.store.audit import AuditReport, verify_chain
from edge.store.db import open_db, transaction
from edge.store.event_log import (
    GENESIS_HASH,
    BadRecordError,
    EventLog,
    LoggedEvent,
    StoredEvent,
    chain_hash,
    prune_events,
)
from edge.store.migrations import SCHEMA_VERSION, migrate
from edge.store.state import delete_state, get_state, put_state

__all__ = [
    "GENESIS_HASH",
    "SCHEMA_VERSION",
    "AuditReport",
    "BadRecordError",
    "EventLog",
    "LoggedEvent",
    "StoredEvent",
    "access_list_version",
    "chain_hash",
    "delete_credential",
    "delete_pass",
    "delete_person",
    "delete_rule",
    "delete_state",
    "get_state",
    "load_access_list",
    "migrate",
    "open_db",
    "prune_events",
    "put_state",
    "save_access_list",
    "set_version",
    "transaction",
    "upsert_credential",
    "upsert_pass",
    "upsert_person",
    "upsert_rule",
    "verify_chain",
]
