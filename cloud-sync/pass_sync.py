"""Visitor passes over the cloud link: the site's trust list comes down, use counts go round the site.

    menwei/v1/{site}/_site/passes/trust   down, retained   PassTrustList -> PassRuntime.apply_trust_list
    menwei/v1/{site}/{gateway}/passes/uses  this gateway's  PassUses      <- PassUseEvent on the bus
    menwei/v1/{site}/+/passes/uses          every gateway's PassUses      -> PassRuntime.merge_use

Why these shapes (docs/contract.md, "Visitor passes"):

- The trust list is one retained message for the whole site, because every gateway of a site trusts the same
  keys: the backend publishes it once, and a gateway that connects for the first time (or after its session
  expired) finds the current list waiting. It is always the full list with a version, so applying it is
  idempotent; a list at or below the version held is a re-delivery (the retained copy comes again on every
  connect) and is ignored. The update rules (a key id always names the same key, a passed retirement is
  final, keys are never forgotten) are edge.passes.trust's; a list that breaks them is refused whole.
- Use counts travel under each gateway's own tree, so the broker's ACL vouches for the reporter (a gateway
  may publish only under its own tree) and a report whose payload names another gateway than its topic is
  refused. A count is a running total per (pass, gateway) and merging keeps the largest, so QoS 1
  re-delivery, reordering and re-announcing are all harmless. While the link is down, a gateway decides on
  what it knows (its own uses and the reports it has); on every connect it announces its own counts again
  (the most recent ANNOUNCE_MAX passes), so a report lost with a dropped connection still arrives.
- A refused message is refused like every down message (Downlink._refuse): one warning line, a
  SyncErrorEvent, an ErrorReport on `errors`; nothing it carried is applied.

Everything here is small and runs on the event loop; the pass runtime persists its state in the background.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Literal

from cloud_sync.link import Incoming
from cloud_sync.messages import Message, PassTrustList, PassUseCount, PassUses
from cloud_sync.topics import Topics, check_segment
from pydantic import ValidationError

from edge.events import Event
from edge.gateway import Gateway
from edge.passes.errors import PassError
from edge.passes.events import PassUseEvent
from edge.passes.uses import UseReport

log = logging.getLogger(__name__)

ANNOUNCE_MAX = 500  # own counts re-announced on connect: one message, well under any payload limit

Publish = Callable[[str, Message], None]
Refuse = Callable[[str, Literal["wrong_site", "rejected"], str], None]  # (topic, error code, detail)
RefuseInvalid = Callable[[str, ValidationError], object]


class PassSync:
    """The gateway's side of the pass topics; owned by the Downlink, which routes the messages here."""

    def __init__(
        self,
        gateway: Gateway,
        topics: Topics,
        *,
        publish: Publish,
        refuse: Refuse,
        refuse_invalid: RefuseInvalid,
    ) -> None:
        self.gateway = gateway
        self.topics = topics
        self._publish = publish
        self._refuse = refuse
        self._refuse_invalid = refuse_invalid
        self.merged = 0  # use reports from other gateways that changed a total, for tests and logs
        self._unsubscribe: Callable[[], None] | None = gateway.bus.subscribe(PassUseEvent, self._on_use)

    def close(self) -> None:
        """Stop publishing this gateway's uses (the link is going away)."""
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None

    # --- the trust list ------------------------------------------------------------------------------------

    def handle_trust(self, msg: Incoming) -> None:
        if not msg.payload:  # the retained list being cleared: nothing to apply, nothing wrong
            return
        try:
            trust = PassTrustList.model_validate_json(msg.payload)
        except ValidationError as err:
            self._refuse_invalid(msg.topic, err)
            return
        passes = self.gateway.passes
        if trust.site != self.gateway.site.id:
            self._refuse(msg.topic, "wrong_site", f"trust list for site {trust.site[:64]!r}")
            return
        if trust.server_time is not None:
            passes.observe_server_time(trust.server_time)
        if trust.version <= passes.trust.version:
            log.debug(
                "pass trust list version %d already held (%d): ignored", trust.version, passes.trust.version
            )
            return
        now = self.gateway.clock.now()
        try:
            passes.apply_trust_list([k.to_domain(now) for k in trust.keys], trust.version)
        except PassError as err:
            self._refuse(msg.topic, "rejected", f"trust list version {trust.version}: {err}")
            return
        held = passes.trust.keys()
        retired = sum(1 for k in held if k.retired_at is not None and k.retired_at <= now)
        log.info(
            "pass trust list version %d applied: %d keys, %d of them retired",
            trust.version,
            len(passes.trust),
            retired,
        )

    # --- use counts ----------------------------------------------------------------------------------------

    def handle_uses(self, msg: Incoming, reporter: str) -> None:
        """A PassUses message on `.../{reporter}/passes/uses` (our own echo is ignored)."""
        if reporter == self.topics.gateway:
            return
        try:
            check_segment(reporter, "gateway id")
        except ValueError:
            self._refuse(msg.topic, "rejected", "use counts outside a gateway's tree")
            return
        try:
            uses = PassUses.model_validate_json(msg.payload)
        except ValidationError as err:
            self._refuse_invalid(msg.topic, err)
            return
        if uses.gateway != reporter:
            self._refuse(
                msg.topic, "rejected", f"use report names gateway {uses.gateway[:64]!r}, not its topic's"
            )
            return
        now = self.gateway.clock.now()
        for use in uses.uses:
            report = UseReport(use.pass_id, reporter, use.count, use.at or now)
            if self.gateway.passes.merge_use(report):
                self.merged += 1
                log.debug("pass %s: %d uses at %s", use.pass_id, use.count, reporter)

    def _on_use(self, event: Event) -> None:
        assert isinstance(event, PassUseEvent)
        r = event.report
        count = PassUseCount.of(r.pass_id, r.count, r.at)
        self._publish(self.topics.pass_uses, PassUses(gateway=r.gateway_id, uses=[count]))

    def announce(self) -> None:
        """Our own counts again (on connect): whatever a dropped connection lost arrives now."""
        counts = self.gateway.passes.local_counts(ANNOUNCE_MAX)
        if counts:
            uses = [PassUseCount.of(p, n) for p, n in counts]
            self._publish(self.topics.pass_uses, PassUses(gateway=self.topics.gateway, uses=uses))
