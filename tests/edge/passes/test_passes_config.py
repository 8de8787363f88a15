"""The [passes] config section: defaults, limits, and its cross-checks against the doors."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge.config import load_config
from edge.errors import ConfigError

BASE = """\
[site]
id = "test-site"
name = "Test site"
timezone = "Asia/Shanghai"

[gateway]
id = "gw-1"

[[controllers]]
type = "simulated"
id = "sim"
outputs = 2
inputs = 4

[[doors]]
id = "front"
name = "Front door"
controller = "sim"
output = 1
"""


def test_defaults(tmp_path: Path) -> None:
    passes = load_config(_write(tmp_path, "")).passes
    assert passes.clock_skew_seconds == 120.0
    assert passes.walkin_key == "pass-walkin-key"
    assert (passes.walkin_doors, passes.walkin_hours, passes.walkin_uses) == ([], 4.0, 1)


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ('walkin_doors = ["back"]', "passes.walkin_doors[0]: unknown door 'back'"),
        ("walkin_hours = 30.0", "passes.walkin_hours: is more than walkin_max_hours"),
        ("walkin_uses = 5", "passes.walkin_uses: is more than walkin_max_uses"),
        ("clock_skew = 1", "passes.clock_skew: unknown key"),
        (
            "clock_skew_seconds = -1.0",
            "passes.clock_skew_seconds: Input should be greater than or equal to 0",
        ),
        ('walkin_key = "../etc/key"', "passes.walkin_key"),
    ],
)
def test_mistakes_are_named(tmp_path: Path, section: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(_write(tmp_path, section))
    assert message in str(info.value)


def _write(tmp_path: Path, section: str) -> Path:
    path = tmp_path / "menwei.toml"
    path.write_text(BASE + "\n[passes]\n" + section + "\n")
    return path
