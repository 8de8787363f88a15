"""Face templates follow the access list: whoever leaves it, or withdraws consent, loses their templates.

Why here and not in the cloud contract: a person can disappear from the access list by a snapshot, a delta, or
a consent flag turned off; every path ends in the gateway's access list. So after each change the gateway
deletes, from the sealed store, the templates of everyone who is no longer in it with `face_consent`, and
tells the face readers to rebuild their galleries. Runs in a thread (SQLite); the doors never wait for it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from pathlib import Path

from edge.model import AccessList

log = logging.getLogger(__name__)


class FaceTemplateKeeper:
    def __init__(self, data_dir: Path, reload_readers: Callable[[], Iterable[Callable[[], None]]]) -> None:
        self.data_dir = data_dir
        self._reloaders = reload_readers

    def consenting(self, acl: AccessList) -> list[str]:
        return [p.id for p in acl.people.values() if p.face_consent]

    def sync(self, people_ids: list[str]) -> list[str]:
        """Delete the templates of everyone not in `people_ids`; returns whose were deleted. Blocking."""
        from edge.face.templates import TemplateStore

        store = TemplateStore.open(self.data_dir)
        try:
            gone = store.retain(people_ids)
        finally:
            store.close()
        if gone:
            log.info("face templates deleted for %d people (removed or consent withdrawn)", len(gone))
            for reload in self._reloaders():
                reload()
        return gone
