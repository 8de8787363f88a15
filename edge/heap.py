"""Hand freed heap memory back to the operating system after a big load.

Why: loading the access list (100,000 people) or the face gallery (20,000 templates) allocates and frees a
lot of short-lived memory (SQLite's page cache, decrypted templates, row buffers) between the objects that
stay. glibc's malloc keeps such free pages in its heaps unless they sit at the very top, so the process's
resident memory stays tens of MB above what it uses, for as long as it runs. `malloc_trim(0)` returns every
whole free page inside the heaps (measured in bench/bench_footprint.py: ~16 MB in the gateway after loading
a 100,000-person list). It takes milliseconds and is a no-op where the C library has no malloc_trim (musl,
macOS).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging
from collections.abc import Callable

log = logging.getLogger(__name__)


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name)
    except OSError:
        return None
    trim = getattr(libc, "malloc_trim", None)
    if trim is None:
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim  # type: ignore[no-any-return]


def release_free_memory() -> bool:
    """Return the heaps' free pages to the OS; True if the C library could (glibc), False otherwise.
    Blocking for a few milliseconds: call it from a thread on a loop that must not stall."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True
