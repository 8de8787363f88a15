"""Visitor pass costs on the gateway.

Prints p50/p99 of
  1. offline verification of a pass token (PassVerifier.verify: Base45, CBOR, key lookup, Ed25519, claims,
     site, clock, key state), against a baseline measured in the same run: a bare Ed25519 verify of the same
     signed bytes with an already-parsed key; the ratio is the verifier's overhead;
  2. the whole decision for a scanned token (PassRuntime.decide: verify + DecisionEngine.decide);
  3. QR decoding of one 1280x720 camera frame holding a pass (drivers.qr.decoder.QrDecoder), sharp and blurred,
     a 640x360 frame, and an empty scene; plus how often plain cv2.QRCodeDetector reads the same frames.

    .venv/bin/python bench/bench_passes.py [--passes 2000] [--frames 40]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from drivers.qr.decoder import QrDecoder
from drivers.sim.qr import qr_frame
from edge.decision import AccessRequest, DecisionEngine, GatewayState
from edge.model import AccessList, CredentialKind, Door, Reader, Site
from edge.passes.claims import PassClaims
from edge.passes.clock_guard import ClockGuard
from edge.passes.issue import PassSigner, new_pass_id, qr_version
from edge.passes.token import decode_token
from edge.passes.trust import TrustList
from edge.passes.verify import PassVerifier

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
SKEW = timedelta(seconds=120)


def percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]


def timed(fn: Callable[[Any], object], items: list[Any]) -> list[float]:
    out = []
    for item in items:
        t0 = time.perf_counter()
        fn(item)
        out.append(time.perf_counter() - t0)
    return out


def us(samples: list[float]) -> str:
    p50, p99 = percentiles(samples)
    return f"p50 {p50 * 1e6:7.1f} us   p99 {p99 * 1e6:7.1f} us"


def ms(samples: list[float]) -> str:
    p50, p99 = percentiles(samples)
    return f"p50 {p50 * 1e3:6.1f} ms   p99 {p99 * 1e3:6.1f} ms"


def make_tokens(signer: PassSigner, count: int) -> list[str]:
    return [
        signer.issue(
            PassClaims(
                pass_id=new_pass_id(),
                site="lotus-garden",
                doors=("main-gate",),
                not_before=NOW - timedelta(hours=1),
                expires=NOW + timedelta(hours=3),
                issued_at=NOW - timedelta(hours=1),
                max_uses=1,
                host_unit="A-1201",
                label="Courier",
            )
        )
        for _ in range(count)
    ]


def bench_verify(count: int) -> None:
    signer = PassSigner.generate()
    others = [PassSigner.generate() for _ in range(4)]  # a trust list of five keys, as after a few rotations
    trust = TrustList([signer.trusted_key(), *(o.trusted_key() for o in others)])
    guard = ClockGuard(SKEW)
    guard.observe_trusted_time(NOW, 0.0, "bench")
    verifier = PassVerifier("lotus-garden", trust, guard)
    tokens = make_tokens(signer, count)
    print(
        f"pass token: {len(tokens[0])} characters, QR version {qr_version(tokens[0])} at error correction M"
    )

    key = trust.verifier(signer.kid)
    assert key is not None
    signed = [decode_token(t) for t in tokens]
    pairs = [(s.signature, s.signed_bytes()) for s in signed]
    for _ in range(2):  # warm-up, and the baseline is taken on both sides of the measured run
        timed(lambda p: key.verify(*p), pairs[:200])
        timed(lambda t: verifier.verify(t, NOW, 0.0), tokens[:200])
    base_a = timed(lambda p: key.verify(*p), pairs)
    full = timed(lambda t: verifier.verify(t, NOW, 0.0), tokens)
    base_b = timed(lambda p: key.verify(*p), pairs)
    base = base_a + base_b
    print(f"baseline: bare Ed25519 verify         {us(base)}   (n={len(base)})")
    print(f"verify:   PassVerifier.verify         {us(full)}   (n={len(full)})")
    print(f"ratio:    verify / baseline at p50    {percentiles(full)[0] / percentiles(base)[0]:.2f}x")

    site = Site(
        id="lotus-garden",
        timezone="Asia/Shanghai",
        doors={"main-gate": Door("main-gate", "Main gate", "sim", 1)},
        readers={"gate-in": Reader("gate-in", "main-gate")},
    )
    engine = DecisionEngine(site, AccessList(), GatewayState())

    def decide(token: str) -> None:
        claims = verifier.verify(token, NOW, 0.0).claims
        req = AccessRequest("gate-in", CredentialKind.PASS, claims.pass_id, NOW)
        engine.decide(req, 0.0, verified=claims.to_visitor_pass(SKEW))

    decided = timed(decide, tokens)
    print(f"decide:   verify + DecisionEngine     {us(decided)}   (n={len(decided)})")


def bench_decode(frames: int) -> None:
    import cv2

    token = make_tokens(PassSigner.generate(), 1)[0]
    decoder = QrDecoder()
    plain = cv2.QRCodeDetector()
    cases = {
        "1280x720 sharp  ": qr_frame(token, module_px=5),
        "1280x720 blurred": qr_frame(token, module_px=6, blur_sigma=2.5),
        "640x360 (0.5x)  ": qr_frame(token, module_px=4, scale=0.5),
        "1280x720 empty  ": qr_frame(None),
    }
    for name, frame in cases.items():
        decoder.decode(frame)  # warm-up
        samples, read = [], 0
        for _ in range(frames):
            t0 = time.perf_counter()
            texts = decoder.decode(frame)
            samples.append(time.perf_counter() - t0)
            read += texts == [token]
        plain_read = plain.detectAndDecode(frame)[0] == token
        expected = (
            ""
            if "empty" in name
            else f"  read {read}/{frames}, plain QRCodeDetector: {'yes' if plain_read else 'no'}"
        )
        print(f"qr decode {name}  {ms(samples)}{expected}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--passes", type=int, default=2000)
    parser.add_argument("--frames", type=int, default=40)
    args = parser.parse_args()
    bench_verify(args.passes)
    bench_decode(args.frames)


if __name__ == "__main__":
    main()
