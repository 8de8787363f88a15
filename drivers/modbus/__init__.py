"""Door controllers on Modbus relay boards (pymodbus, asyncio), over RTU (RS-485 serial) or TCP.

    profile.BoardProfile         which table and address each output, input and timed pulse lives at
    bus.ModbusBus                one connection per line: one asyncio.Lock, a gap between frames, errors
                                 converted to DriverError
    controller.ModbusDoorController   the DoorController: polls inputs, writes outputs, reconnects with capped
                                 exponential backoff and reports offline/recovered

pymodbus is imported by bus.py only, so the rest of the gateway imports without it.
"""

from drivers.modbus.profile import BoardProfile, PulseCommand, Table

__all__ = ["BoardProfile", "PulseCommand", "Table"]
