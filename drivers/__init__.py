"""Hardware adapters. Each device family has one small interface here and one or more implementations:
real ones on their protocol library, and a simulator that ships beside them for tests, the demo and installers.

    door_controller.DoorController   relays and inputs (simulated, modbus/, firmware-bridge)
    reader.Reader                    credential sources with feedback and fault conditions (simulated, osdp/,
                                     wiegand/, ble/, qr/, face/)
"""
