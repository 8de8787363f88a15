"""The device's side of the link: a reference implementation of the door-controller firmware's protocol logic.

`core.Device` is the whole protocol (reply cache, device-timed pulses, events retransmitted until acked,
heartbeats, the firmware-update receiver and the A/B boot logic). It talks to the world only through the small
classes in `hal` (port, clock, board, storage, signature check), so the same code runs

- on the gateway's CPython as a simulator (`sim.SimulatedDevice`, over a pseudo-terminal), for tests and demos;
- on MicroPython on an ESP32 or RP2040, with `hal` classes over `machine.UART` and `machine.Pin`
  (see docs/firmware-bridge.md).

Portable modules (core, hal, slots, and ../frame.py, ../protocol.py) use only struct, binascii, hashlib and json,
plain classes and f-strings; their annotations are never evaluated on MicroPython, and typing names are imported
only under `if TYPE_CHECKING`. `sim` is CPython-only.
"""
