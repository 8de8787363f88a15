"""Face verification costs on the gateway, for each model pack in ../shared/models.

Prints
  1. bare detector + recognizer time for one face in a 640x480 frame (the baseline), and frame-in -> decision
     through the whole camera loop (motion gate, detection, tracking, embedding, liveness, 1:N search) in the
     same run; target: loop p95 <= 1.5x the bare time;
  2. 1:N search p50/p99 at 10,000 and 100,000 enrolled faces (the real enrolments plus synthetic unit
     vectors) and the gallery's memory; targets: p99 <= 10 ms and <= 120 MB at 100,000;
  3. on the labelled photos at the pack's default threshold and margin: false rejects (each other photo of an
     enrolled person against a gallery of one photo per person) and false accepts (each person's photos
     against a gallery of everyone else).

    .venv/bin/python bench/bench_face.py [--models ../shared/models] [--photos ../shared/data/faces]
"""

from __future__ import annotations

import argparse
import csv
import functools
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from edge.face.gallery import Gallery
from edge.face.packs import load_pack
from edge.face.pipeline import Embedding, FacePipeline, Image, Tuning, read_image

SHARED = Path(__file__).resolve().parents[2] / "shared"
PACKS = ("insightface_s_int8", "opencv_yunet_sface")


def percentiles(samples: list[float]) -> tuple[float, float, float]:
    ordered = sorted(samples)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]

    return statistics.median(ordered), at(0.95), at(0.99)


def timed(fn: Callable[[], object], n: int, warmup: int = 3) -> list[float]:
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t) * 1000)
    return out


def one_face_frame(photos: Path) -> Image:
    """A 640x480 frame with one face about 150 px wide, as a door camera sees a resident at ~1 m."""
    import cv2

    image = read_image(photos / "obama" / "obama.jpg")
    scale = 480 / image.shape[0]
    small = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    frame = np.full((480, 640, 3), 90, np.uint8)
    x = (640 - small.shape[1]) // 2
    frame[:, x : x + small.shape[1]] = small
    return frame


def labelled(photos: Path) -> list[tuple[str, Path]]:
    with (photos / "labels.tsv").open(encoding="utf-8") as f:
        return [(r["identity"], photos / r["path"]) for r in csv.DictReader(f, delimiter="\t")]


def bench_models(pipeline: FacePipeline, frame: Image, n: int) -> list[float]:
    def bare() -> None:
        faces = pipeline.detect(frame)
        pipeline.embed_face(frame, faces[0])

    return timed(bare, n)


def bench_loop(pipeline: FacePipeline, photos: Path, approaches: int) -> list[float]:
    """Frame in -> decision: the frame on which an approaching resident is decided, through the camera loop
    (motion gate, detection, tracking, embedding, liveness, 1:N search) and the decision engine."""
    from datetime import UTC, datetime

    from drivers.face.loop import FaceLoop, OutcomeKind
    from edge.decision import AccessRequest, DecisionEngine
    from edge.model import (
        AccessList,
        AccessRule,
        Credential,
        CredentialKind,
        Door,
        Group,
        Person,
        Reader,
        Site,
    )

    poses = [
        read_image(photos / "obama" / p) for p in ("obama.jpg", "obama1.jpg", "obama2.jpg", "obama3.jpg")
    ]
    frames = [door_frame(pipeline, image) for image in poses]
    gallery = Gallery(pipeline.embedding_size)
    gallery.add("tpl-obama", "obama", pipeline.embed_face(poses[0], pipeline.detect(poses[0])[0]))
    site = Site("s", "UTC", {"d": Door("d", "d", "c", 1)}, {"r": Reader("r", "d")})
    acl = AccessList.build(
        version=1,
        people=[Person("obama", "Obama", face_consent=True, group_ids=("g",))],
        groups=[Group("g")],
        rules=[AccessRule("rule", "g", ("d",))],
        credentials=[Credential(CredentialKind.FACE, "tpl-obama", "obama")],
    )
    engine = DecisionEngine(site, acl)
    out = []
    for _ in range(approaches):
        loop = FaceLoop(pipeline, gallery)
        for i in range(12):
            frame = frames[i % len(frames)]
            t = time.perf_counter()
            outcomes = loop.process(frame, i / 10)
            for o in outcomes:
                if o.kind is OutcomeKind.RECOGNISED and o.face_id is not None:
                    decision = engine.decide(
                        AccessRequest("r", CredentialKind.FACE, o.face_id, datetime.now(UTC)),
                        time.monotonic(),
                    )
                    assert decision.granted
                    out.append((time.perf_counter() - t) * 1000)
            if outcomes:
                break
    return out


def door_frame(pipeline: FacePipeline, image: Image) -> Image:
    """The photo's face, about 150 px, at the door position of a grey 640x480 frame."""
    import cv2

    face = pipeline.detect(image)[0]
    cx, cy = face.centre
    half = 1.1 * max(face.width, face.height)
    src = np.array([[cx - half, cy - half], [cx + half, cy - half], [cx - half, cy + half]], np.float32)
    dst = np.array([[0, 0], [300, 0], [0, 300]], np.float32)
    crop = cv2.warpAffine(image, cv2.getAffineTransform(src, dst), (300, 300), borderValue=(90, 90, 90))
    frame = np.full((480, 640, 3), 90, np.uint8)
    frame[90:390, 170:470] = crop
    return frame


def bench_search(dim: int, real: list[tuple[str, Embedding]], sizes: tuple[int, ...], queries: int) -> None:
    rng = np.random.default_rng(0)
    for size in sizes:
        gallery = Gallery(dim, capacity=size)
        for who, e in real:
            gallery.add(f"face-{who}", who, e)
        chunk = 10_000
        done = len(gallery)
        while done < size:
            m = min(chunk, size - done)
            fake = rng.standard_normal((m, dim)).astype(np.float32)
            fake /= np.linalg.norm(fake, axis=1, keepdims=True)
            for i in range(m):
                gallery.add(f"syn-{done + i}", f"syn-{done + i}", fake[i])
            done += m
        probes = [e for _, e in real]
        ids_mb = sum(len(f) + 49 for f in gallery._face_ids) / 1e6  # str objects, approximately
        for threads in (1, 2):
            gallery = gallery.with_threads(threads)
            p50, _, p99 = percentiles(timed(functools.partial(search_round, gallery, probes), queries))
            print(
                f"  1:N search at {size:>7,} x {dim}, {threads} thread(s): p50 {p50:6.2f} ms  p99 {p99:6.2f} ms"
                f"   memory {gallery.nbytes / 1e6:6.1f} MB arrays + ~{ids_mb:.1f} MB ids"
            )


_next = [0]


def search_round(gallery: Gallery, probes: list[Embedding]) -> None:
    _next[0] += 1
    gallery.search(probes[_next[0] % len(probes)], threshold=0.3, margin=0.05)


def bench_accuracy(pipeline: FacePipeline, photos: Path) -> list[tuple[str, Embedding]]:
    t = pipeline.pack.manifest.thresholds
    embedded = []
    for who, path in labelled(photos):
        image = read_image(path)
        embedded.append((who, pipeline.embed_face(image, pipeline.detect(image)[0])))
    first: dict[str, Embedding] = {}
    for who, e in embedded:
        first.setdefault(who, e)
    gallery = Gallery(pipeline.embedding_size)
    for who, e in first.items():
        gallery.add(who, who, e)
    genuine = [(who, e) for who, e in embedded if not any(e is f for f in first.values())]
    rejects = sum(
        1
        for who, e in genuine
        if not ((r := gallery.search(e, threshold=t.match, margin=t.margin)).matched and r.person_id == who)
    )
    accepts = trials = 0
    for who, e in embedded:  # impostor: a gallery of everyone but `who`
        others = Gallery(pipeline.embedding_size)
        for other, f in first.items():
            if other != who:
                others.add(other, other, f)
        trials += 1
        accepts += others.search(e, threshold=t.match, margin=t.margin).matched
    print(
        f"  labelled photos at threshold {t.match} / margin {t.margin}: false rejects {rejects}/{len(genuine)}"
        f" (FRR {rejects / max(1, len(genuine)):.1%}), false accepts {accepts}/{trials}"
        f" (FAR {accepts / max(1, trials):.1%})"
    )
    return list(first.items())


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", type=Path, default=SHARED / "models")
    parser.add_argument("--photos", type=Path, default=SHARED / "data" / "faces")
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument(
        "--approaches", type=int, default=40, help="residents walking up, for the loop timing"
    )
    parser.add_argument("--threads", type=int, default=1, help="onnxruntime threads per session")
    args = parser.parse_args()
    frame = one_face_frame(args.photos)
    for name in PACKS:
        pack = load_pack(args.models / name)
        pipeline = FacePipeline(pack, Tuning(intra_op_threads=args.threads))
        print(pack.describe())
        p50, p95, p99 = percentiles(bench_models(pipeline, frame, args.frames))
        print(
            f"  bare detector + recognizer, one face in 640x480: p50 {p50:.1f} ms  p95 {p95:.1f} ms  p99 {p99:.1f} ms"
        )
        bare_p95 = p95
        p50, p95, p99 = percentiles(bench_loop(pipeline, args.photos, args.approaches))
        print(
            f"  frame in -> decision through the loop:          p50 {p50:.1f} ms  p95 {p95:.1f} ms  p99 {p99:.1f} ms"
            f"   (p95 {p95 / bare_p95:.2f}x bare; target <= 1.5x)"
        )
        real = bench_accuracy(pipeline, args.photos)
        bench_search(pipeline.embedding_size, real, (10_000, 100_000), args.queries)


if __name__ == "__main__":
    main()
