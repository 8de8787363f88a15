"""Face templates at rest: embeddings sealed with AES-256-GCM in their own SQLite file, never sent upstream.

Why its own file (faces.db beside menwei.db): templates are biometric data. Keeping them apart means an operator
can wipe, exclude from backups or hand over the rest of the database without them, and the access list's
schema versions (which other features bump) are not tied to this table. The same migration runner
(edge.store.migrations) versions it, with its own list of steps.

Why sealed: a stolen SD card must not give away residents' faces. The key (32 bytes) comes from the
credential `face-key` ($CREDENTIALS_DIRECTORY or $MENWEI_SECRET_FACE_KEY), never from the config. Each row has a
fresh 96-bit nonce, and the row id, face id, person id and pack name are authenticated as associated data, so
a row copied onto another person fails to open instead of letting them in.

Deleted with the person: `delete_person` on removal, and `retain` drops every template of someone no longer in
the access list or who withdrew consent.
"""

from __future__ import annotations

import logging
import os
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import sqlite_utils
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from edge.errors import StoreError
from edge.face.pipeline import Embedding
from edge.secrets import read_secret_bytes
from edge.store.migrations import Migration, migrate

log = logging.getLogger(__name__)

FACE_DB = "faces.db"
FACE_KEY_CREDENTIAL = "face-key"

MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "face templates",
        (
            "CREATE TABLE templates (id TEXT PRIMARY KEY, face_id TEXT NOT NULL, person_id TEXT NOT NULL,"
            " pack TEXT NOT NULL, dim INTEGER NOT NULL, nonce BLOB NOT NULL, sealed BLOB NOT NULL,"
            " source TEXT NOT NULL, created_at TEXT NOT NULL)",
            "CREATE INDEX templates_person ON templates(person_id)",
            "CREATE INDEX templates_face ON templates(face_id)",
        ),
    ),
)


@dataclass(frozen=True, slots=True)
class Template:
    id: str
    face_id: str  # the FACE credential value the door decides on
    person_id: str
    pack: str
    embedding: Embedding = field(repr=False)
    source: str = ""


def face_key() -> bytes:
    """The template key from the credentials directory or the environment (ConfigError if absent)."""
    secret = read_secret_bytes(FACE_KEY_CREDENTIAL, length=32)
    assert secret is not None
    return secret.get_secret_value()


class TemplateStore:
    def __init__(self, path: Path, key: bytes) -> None:
        if len(key) != 32:
            raise ValueError("the face template key must be 32 bytes (AES-256)")
        self._aead = AESGCM(key)
        self.path = path
        try:
            conn = sqlite3.connect(path)
            self._db = sqlite_utils.Database(conn)
            conn.execute("PRAGMA busy_timeout = 10000")
            self._db.enable_wal()
            migrate(self._db, steps=MIGRATIONS)
        except sqlite3.Error as err:
            raise StoreError(f"cannot open face template store {path}: {err}") from err
        path.chmod(0o600)

    @classmethod
    def open(cls, data_dir: Path, key: bytes | None = None) -> TemplateStore:
        data_dir.mkdir(parents=True, exist_ok=True)
        return cls(data_dir / FACE_DB, key if key is not None else face_key())

    def close(self) -> None:
        self._db.conn.close()

    def add(self, face_id: str, person_id: str, pack: str, embedding: Embedding, source: str = "") -> str:
        row_id = os.urandom(12).hex()
        nonce = os.urandom(12)
        plain = np.asarray(embedding, "<f4").tobytes()
        sealed = self._aead.encrypt(nonce, plain, _aad(row_id, face_id, person_id, pack))
        with self._db.conn:
            self._db.conn.execute(
                "INSERT INTO templates VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    row_id,
                    face_id,
                    person_id,
                    pack,
                    embedding.shape[0],
                    nonce,
                    sealed,
                    source,
                    datetime.now(UTC).isoformat(),
                ),
            )
        return row_id

    def load(self, pack: str) -> list[Template]:
        """Every template made by `pack`. Rows that fail authentication (tampered, or sealed with another key)
        are skipped and logged, never used."""
        out: list[Template] = []
        bad = 0
        rows = self._db.conn.execute(
            "SELECT id, face_id, person_id, pack, nonce, sealed, source FROM templates WHERE pack = ?",
            (pack,),
        )
        for row_id, face_id, person_id, row_pack, nonce, sealed, source in rows:
            try:
                plain = self._aead.decrypt(nonce, sealed, _aad(row_id, face_id, person_id, row_pack))
            except InvalidTag:
                bad += 1
                continue
            embedding = np.frombuffer(plain, "<f4").astype(np.float32)
            out.append(Template(row_id, face_id, person_id, row_pack, embedding, source))
        if bad:
            log.error(
                "%d face templates failed authentication (tampered, or another key) and are ignored", bad
            )
        other = self.count() - len(out) - bad
        if other:
            log.warning(
                "%d face templates belong to another model pack than %s and are not used", other, pack
            )
        return out

    def count(self, person_id: str | None = None) -> int:
        if person_id is None:
            n: int = self._db.conn.execute("SELECT count(*) FROM templates").fetchone()[0]
        else:
            n = self._db.conn.execute(
                "SELECT count(*) FROM templates WHERE person_id = ?", (person_id,)
            ).fetchone()[0]
        return n

    def delete_person(self, person_id: str) -> int:
        with self._db.conn:
            return self._db.conn.execute("DELETE FROM templates WHERE person_id = ?", (person_id,)).rowcount

    def delete_face(self, face_id: str) -> int:
        with self._db.conn:
            return self._db.conn.execute("DELETE FROM templates WHERE face_id = ?", (face_id,)).rowcount

    def retain(self, person_ids: Iterable[str]) -> list[str]:
        """Delete the templates of everyone not in `person_ids` (removed, or consent withdrawn); return them."""
        keep = set(person_ids)
        stored = [r[0] for r in self._db.conn.execute("SELECT DISTINCT person_id FROM templates")]
        gone = [p for p in stored if p not in keep]
        for person_id in gone:
            self.delete_person(person_id)
        if gone:
            log.info("deleted the face templates of %d people no longer enrolled or consenting", len(gone))
        return gone


def _aad(row_id: str, face_id: str, person_id: str, pack: str) -> bytes:
    return "\x1f".join((row_id, face_id, person_id, pack)).encode("utf-8")
