"""What the gateway's sync parts need from the MQTT connection: a way to publish. MqttLink provides it; tests
may pass anything with the same method."""

from __future__ import annotations

from typing import Protocol


class Publisher(Protocol):
    def publish(
        self,
        topic: str,
        payload: bytes,
        *,
        qos: int = 1,
        retain: bool = False,
        expiry: int | None = None,
        correlation_data: bytes | None = None,
        response_topic: str | None = None,
        content_type: str = "application/json",
    ) -> int: ...
