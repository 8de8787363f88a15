"""A simulated OSDP reader: libosdp's own PeripheralDevice, so the ControlPanel under test talks to the real
protocol stack. Present a card (as raw Wiegand bits), press keys, open the tamper switch, and read back the
LED and buzzer commands it was sent. Used by tests, the demo and the benchmark; installers can point it at a
serial port to try a gateway without a reader.
"""

from __future__ import annotations

import queue
from collections.abc import Callable
from typing import Any

from drivers.wiegand.decoder import WiegandFormat, encode


class SimulatedOsdpReader:
    def __init__(self, channel: Callable[[], Any], *, address: int = 0, key: bytes | None) -> None:
        """key None starts the reader in install mode (it then accepts a key from a CP)."""
        from osdp import Capability, LibFlag, LogLevel, PDCapabilities, PDInfo, PeripheralDevice

        flags = [] if key is None else [LibFlag.EnforceSecure]
        caps = PDCapabilities(
            [
                (Capability.CardDataFormat, 1, 1),
                (Capability.LEDControl, 1, 1),
                (Capability.AudibleControl, 1, 1),
                (Capability.CommunicationSecurity, 1, 1),
            ]
        )
        self._pd = PeripheralDevice(
            PDInfo(address, channel(), scbk=key, flags=flags), caps, log_level=LogLevel.Error
        )
        self._started = False

    def start(self) -> None:
        self._pd.start()
        self._started = True

    def stop(self) -> None:
        if self._started:
            self._pd.stop()
            self._started = False

    @property
    def secure(self) -> bool:
        return bool(self._pd.is_sc_active())

    # --- the person at the reader ----------------------------------------------------------------------------

    def present_bits(self, bits: list[int]) -> None:
        from osdp import CardFormat, Event

        data = bytearray((len(bits) + 7) // 8)
        for i, bit in enumerate(bits):
            data[i // 8] |= bit << (7 - i % 8)
        self._pd.submit_event(
            {
                "event": Event.CardRead,
                "reader_no": 0,
                "direction": 0,
                "format": CardFormat.Wiegand,
                "data": bytes(data),
                "length": len(bits),
            }
        )

    def present_card(
        self, number: int, facility: int | None = None, fmt: WiegandFormat = WiegandFormat.H10301
    ) -> None:
        self.present_bits(encode(fmt, number, facility))

    def press(self, keys: str) -> None:
        from osdp import Event

        self._pd.submit_event({"event": Event.KeyPress, "reader_no": 0, "data": keys.encode("ascii")})

    def tamper(self, active: bool) -> None:
        from osdp import Event, StatusReportType

        self._pd.submit_event(
            {"event": Event.Status, "type": StatusReportType.Local, "report": bytes([int(active), 0])}
        )

    def commands(self, wait: float = 0.0) -> list[dict[str, Any]]:
        """Commands received since the last call (LED, buzzer...), waiting up to `wait` s for the first."""
        out: list[dict[str, Any]] = []
        while True:
            try:
                out.append(self._pd.command_queue.get(timeout=wait if not out and wait > 0 else 0.001))
            except queue.Empty:
                return out
