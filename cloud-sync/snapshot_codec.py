"""Snapshot encoding: an AccessListDocument <-> gzip'd JSON bytes <-> chunks with sha-256 checks.

Shared by the cloud kit (which splits) and the gateway (which reassembles), so both sides agree by
construction. Reassembly is strict: every chunk's own sha-256 must match, all chunks must be present, and
the concatenation must match the total sha-256 before a single byte is decompressed.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import uuid
from datetime import datetime

from cloud_sync.messages import AccessListDocument, SnapshotChunk

DEFAULT_CHUNK_BYTES = 256 * 1024
MAX_SNAPSHOT_BYTES = 256 * 1024 * 1024  # decompressed: a bound against a gzip bomb


class SnapshotError(ValueError):
    """A snapshot chunk or the reassembled snapshot does not check out."""


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def encode_snapshot(
    doc: AccessListDocument,
    *,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    snapshot_id: str | None = None,
    server_time: datetime | None = None,
) -> list[SnapshotChunk]:
    blob = gzip.compress(doc.model_dump_json(by_alias=True).encode(), compresslevel=6, mtime=0)
    total = sha256_hex(blob)
    parts = [blob[i : i + chunk_bytes] for i in range(0, len(blob), chunk_bytes)] or [b""]
    sid = snapshot_id or uuid.uuid4().hex
    return [
        SnapshotChunk(
            snapshot_id=sid,
            version=doc.version,
            index=i,
            count=len(parts),
            sha256=sha256_hex(part),
            total_sha256=total,
            data=base64.b64encode(part).decode(),
            server_time=server_time,
        )
        for i, part in enumerate(parts)
    ]


def chunk_bytes_of(chunk: SnapshotChunk) -> bytes:
    """The chunk's bytes, checked against its own sha-256."""
    try:
        data = base64.b64decode(chunk.data, validate=True)
    except ValueError as err:
        raise SnapshotError(f"chunk {chunk.index}: data is not base64") from err
    if sha256_hex(data) != chunk.sha256:
        raise SnapshotError(f"chunk {chunk.index}/{chunk.count} of {chunk.snapshot_id}: sha-256 mismatch")
    return data


def decode_snapshot(parts: list[bytes], total_sha256: str) -> AccessListDocument:
    """Join the chunks' bytes (in index order), check the total, decompress with a size bound, validate."""
    blob = b"".join(parts)
    if sha256_hex(blob) != total_sha256:
        raise SnapshotError("snapshot total sha-256 mismatch")
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(blob)) as gz:
            raw = gz.read(MAX_SNAPSHOT_BYTES + 1)
    except (OSError, EOFError) as err:
        raise SnapshotError(f"snapshot is not valid gzip: {err}") from err
    if len(raw) > MAX_SNAPSHOT_BYTES:
        raise SnapshotError(f"snapshot larger than {MAX_SNAPSHOT_BYTES} bytes decompressed")
    return AccessListDocument.model_validate_json(raw)
