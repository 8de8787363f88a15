"""The MQTT topic tree, version 1. One place builds every topic, so the document and the code cannot drift.

menwei/v1/{site}/{gateway}/
    acl/snapshot    down  chunked full access list                       QoS 1
    acl/delta       down  sequenced changes on top of a named version     QoS 1
    cmd             down  commands (MQTT 5 response topic + correlation)  QoS 1, message expiry
    cmd/reply       up    default response topic for commands             QoS 1
    events          up    batches of decisions and alarms from the outbox QoS 1
    acl/state       up    the access-list version in force               QoS 1, retained
    acl/request     up    "send me a snapshot" (gap, mismatch, start-up)  QoS 1
    status          up    online/offline; the offline one is the will     QoS 1, retained
    telemetry       up    heartbeat: versions, outbox depth, devices      QoS 0, retained
    errors          up    refused down messages and why                   QoS 1
    ble/keys        down  this gateway's BLE phone keys (full list)       QoS 1, retained
    passes/uses     peer  this gateway's visitor-pass use counts          QoS 1
                          (published here; every gateway of the site also reads `+/passes/uses`)

menwei/v1/{site}/_site/
    passes/trust    down  the site's pass-signing keys (full list)        QoS 1, retained

Why `_site`: a gateway id is a topic level that must start with a letter or digit, so `_site` can never be
a gateway's tree. The trust list is one message for the whole site (every gateway trusts the same keys),
retained so a gateway that connects for the first time, or after its session expired, gets it at once.
Use counts travel under each gateway's own tree, so the broker's ACL vouches for who reported them (a
gateway may write only its own tree), and every gateway reads them all with one wildcard subscription.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

PREFIX = "menwei/v1"
SITE_LEVEL = "_site"  # the site-wide level, in the place of a gateway id (which cannot start with "_")
_SEGMENT = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


def check_segment(value: str, what: str) -> str:
    """Site and gateway ids become topic levels: no '/', '+', '#' or anything else surprising."""
    if not _SEGMENT.match(value):
        raise ValueError(f"{what} {value!r} is not a valid topic level (lowercase letters, digits, - and _)")
    return value


@dataclass(frozen=True, slots=True)
class Topics:
    site: str
    gateway: str
    prefix: str = PREFIX

    def __post_init__(self) -> None:
        check_segment(self.site, "site id")
        check_segment(self.gateway, "gateway id")

    @property
    def base(self) -> str:
        return f"{self.prefix}/{self.site}/{self.gateway}"

    # down
    @property
    def snapshot(self) -> str:
        return f"{self.base}/acl/snapshot"

    @property
    def delta(self) -> str:
        return f"{self.base}/acl/delta"

    @property
    def command(self) -> str:
        return f"{self.base}/cmd"

    @property
    def ble_keys(self) -> str:
        return f"{self.base}/ble/keys"

    # up
    @property
    def command_reply(self) -> str:
        return f"{self.base}/cmd/reply"

    @property
    def events(self) -> str:
        return f"{self.base}/events"

    @property
    def acl_state(self) -> str:
        return f"{self.base}/acl/state"

    @property
    def acl_request(self) -> str:
        return f"{self.base}/acl/request"

    @property
    def status(self) -> str:
        return f"{self.base}/status"

    @property
    def telemetry(self) -> str:
        return f"{self.base}/telemetry"

    @property
    def errors(self) -> str:
        return f"{self.base}/errors"

    # peer: published by this gateway, read by every gateway of the site (through `pass_uses_filter`)
    @property
    def pass_uses(self) -> str:
        return f"{self.base}/passes/uses"

    # down, site-wide
    @property
    def pass_trust(self) -> str:
        return site_level(self.site, "passes/trust", self.prefix)

    def pass_uses_filter(self) -> str:
        """Every gateway's use counts in this site (this gateway's own included; it ignores those)."""
        return f"{self.prefix}/{self.site}/+/passes/uses"

    def down(self) -> tuple[str, ...]:
        """What the gateway subscribes to (and what the broker's ACL lets it read)."""
        return (
            self.snapshot,
            self.delta,
            self.command,
            self.ble_keys,
            self.pass_trust,
            self.pass_uses_filter(),
        )


def site_wildcard(site: str, leaf: str, prefix: str = PREFIX) -> str:
    """All gateways of a site, e.g. site_wildcard('s1', 'events') for a backend consumer."""
    return f"{prefix}/{check_segment(site, 'site id')}/+/{leaf}"


def site_level(site: str, leaf: str, prefix: str = PREFIX) -> str:
    """A site-wide topic, e.g. site_level('s1', 'passes/trust') for the site's pass trust list."""
    return f"{prefix}/{check_segment(site, 'site id')}/{SITE_LEVEL}/{leaf}"


def parse(topic: str, prefix: str = PREFIX) -> tuple[str, str, str] | None:
    """(site, gateway, leaf) for a topic in the tree, else None."""
    if not topic.startswith(prefix + "/"):
        return None
    parts = topic[len(prefix) + 1 :].split("/", 2)
    if len(parts) != 3:
        return None
    return parts[0], parts[1], parts[2]
