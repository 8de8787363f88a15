"""Searching the in-memory access list from a console request without stalling the doors.

The access list can hold 100,000 people and 200,000 credentials, and it lives on the gateway's loop (deltas
change it there, so it is not read from a thread). A search walks a snapshot list of it in slices and yields
to the loop between slices, so a decision waits for one slice at most, never for the whole walk.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import TypeVar

T = TypeVar("T")

SLICE = 1000


async def scan(items: Sequence[T], keep: Callable[[T], bool], limit: int | None = None) -> list[T]:
    """The items `keep` accepts, in order, at most `limit`."""
    found: list[T] = []
    for start in range(0, len(items), SLICE):
        for item in items[start : start + SLICE]:
            if keep(item):
                found.append(item)
                if limit is not None and len(found) >= limit:
                    return found
        await asyncio.sleep(0)
    return found
