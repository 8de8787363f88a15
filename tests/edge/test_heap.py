"""edge.heap: freed heap pages go back to the OS (glibc malloc_trim), measured in a fresh interpreter."""

from __future__ import annotations

import json
import subprocess
import sys

from edge.heap import release_free_memory

CHILD = """
import json, os
from edge.heap import release_free_memory

def rss_mb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20

# 80 MB of 4 KB blocks from malloc (bytes above pymalloc's 512-byte limit); every 50th survives, so the freed
# blocks are holes inside the heap that free() itself cannot hand back (it only trims the top).
blocks = [bytes(4000) for _ in range(20_000)]
keep = blocks[::50]
del blocks
before = rss_mb()
released = release_free_memory()
print(json.dumps({"before": before, "after": rss_mb(), "released": released, "kept": len(keep)}))
"""


def test_free_pages_inside_the_heap_are_returned() -> None:
    out = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, check=True)
    result = json.loads(out.stdout)
    assert result["released"] is True
    assert result["after"] < result["before"] - 40, result


def test_it_can_be_called_again() -> None:
    assert release_free_memory() is True
    assert release_free_memory() is True
