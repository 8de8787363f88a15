"""Card and PIN readers over OSDP (libosdp's ControlPanel), Secure Channel enforced.

    channel.py    byte pipes libosdp reads and writes: a serial port (pyserial) or a raw fd (a pty in tests)
    feedback.py   LED and buzzer commands, validated before they are sent: libosdp takes a reader offline
                  for 300 s after any NAK, so a command the reader would refuse must never reach it
    reader.py     OsdpReader: card bits through the Wiegand decoder, keypad to PIN, feedback, offline and
                  tamper conditions
    install.py    install mode: give a reader in install mode a new key (generated with `secrets`)

libosdp is imported by these modules only; the `libosdp` and PyPI `osdp` packages both install a top-level
`osdp` module, so only libosdp may be installed.
"""
