"""QR pass readers: a camera watching the gate (camera.py) and hand-held scanners that type or send a line per
scan (line_scanner.py). Each is a drivers.reader.Reader producing CredentialRead(kind=PASS, value=<the code>),
so a scanned pass goes through the same decision and event flow as a card.

OpenCV is imported only when a camera reader starts or a frame is decoded (the `qr` extra), so this package
imports on a gateway without it.
"""

from drivers.qr.camera import Deduper, QrCameraReader
from drivers.qr.line_scanner import LineAssembler, LineScannerReader, SerialScannerReader

__all__ = ["Deduper", "LineAssembler", "LineScannerReader", "QrCameraReader", "SerialScannerReader"]
