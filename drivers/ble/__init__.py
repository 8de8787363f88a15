"""BLE phone keys: a resident's phone advertises a rotating token that the gateway verifies offline.

    token.py     the token scheme (HMAC-SHA256 of the 30 s time step under the resident's key, truncated) and
                 the verifier: +-1 step for clock drift, each token accepted once
    reader.py    BleReader: bleak's BleakScanner (backend injectable), an RSSI threshold as the "I am at the
                 door" intent, verified tokens as BLE credentials

The simulator (drivers/sim/ble.py) is a bleak backend that replays advertisements, so the code under test is
the real BleakScanner path. The phone side is specified in docs/ble-phone-keys.md.
"""
