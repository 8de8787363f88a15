from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np

from edge.face.templates import FACE_DB, TemplateStore

KEY = bytes(range(32))


def unit(seed: int, dim: int = 128) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal(dim).astype(np.float32)
    return v / np.linalg.norm(v)


def test_templates_are_sealed_at_rest_and_open_with_the_key(tmp_path: Path) -> None:
    store = TemplateStore.open(tmp_path, KEY)
    vector = unit(1)
    store.add("face-1", "p1", "pack-a", vector, "a.jpg")
    store.close()
    raw = b"".join(p.read_bytes() for p in tmp_path.glob(f"{FACE_DB}*"))
    assert vector.astype("<f4").tobytes()[:16] not in raw
    assert (tmp_path / FACE_DB).stat().st_mode & 0o077 == 0

    reopened = TemplateStore.open(tmp_path, KEY)
    [template] = reopened.load("pack-a")
    assert (template.face_id, template.person_id, template.source) == ("face-1", "p1", "a.jpg")
    np.testing.assert_array_equal(template.embedding, vector)
    assert reopened.load("pack-b") == []
    assert TemplateStore.open(tmp_path, bytes(32)).load("pack-a") == []  # another key opens nothing


def test_a_row_moved_to_another_person_fails_authentication(tmp_path: Path) -> None:
    store = TemplateStore.open(tmp_path, KEY)
    store.add("face-1", "p1", "pack-a", unit(1))
    store.close()
    with sqlite3.connect(tmp_path / FACE_DB) as conn:
        conn.execute("UPDATE templates SET person_id = 'intruder'")
    assert TemplateStore.open(tmp_path, KEY).load("pack-a") == []


def test_templates_are_deleted_with_the_person(tmp_path: Path) -> None:
    store = TemplateStore.open(tmp_path, KEY)
    for person in ("p1", "p1", "p2", "p3"):
        store.add(f"face-{person}", person, "pack-a", unit(hash(person) % 100))
    assert store.delete_person("p1") == 2
    assert store.retain(["p2"]) == ["p3"]
    assert [t.person_id for t in store.load("pack-a")] == ["p2"]
    assert store.delete_face("face-p2") == 1
    assert store.count() == 0
