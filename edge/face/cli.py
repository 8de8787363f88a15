"""`menwei face ...`: enrolment from the command line.

    menwei face enroll DIR|CSV --config FILE --pack DIR [--manifest NAME]

DIR holds one sub-folder per person, named by the person's id in the access list; a CSV has the columns
person_id and path. Each photo is enrolled under the person's FACE credential (the value the door decides on;
the person id if the cloud has not issued one yet). Every refusal is printed with its reason; the exit status
is 0 if everything was enrolled, 1 if some photos were refused.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from edge.model import AccessList, CredentialKind


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    face = sub.add_parser("face", help="face enrolment")
    face_sub = face.add_subparsers(dest="face_command", required=True)
    enroll = face_sub.add_parser(
        "enroll", help="enrol photos from a folder (one sub-folder per person) or a CSV"
    )
    enroll.add_argument("source", type=Path, help="folder of per-person folders, or a CSV (person_id,path)")
    enroll.add_argument(
        "--config", type=Path, required=True, help="gateway config (its data_dir and access list)"
    )
    enroll.add_argument("--pack", type=Path, required=True, help="model pack directory")
    enroll.add_argument(
        "--manifest", default=None, help="manifest name in config/model-packs (default: pack dir name)"
    )


def face_id_of(acl: AccessList, person_id: str) -> str:
    """The value of the person's FACE credential: what the face reader presents when it sees them."""
    for credential in acl.credentials.values():
        if credential.kind is CredentialKind.FACE and credential.person_id == person_id:
            return credential.value
    return person_id


def face_main(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from edge.config import load_config
    from edge.face.enroll import Enroller, load_gallery, photo_jobs
    from edge.face.errors import FaceError
    from edge.face.packs import load_pack
    from edge.face.pipeline import FacePipeline
    from edge.face.templates import TemplateStore
    from edge.gateway import DB_NAME
    from edge.store.access_store import load_access_list
    from edge.store.db import open_db

    config = load_config(args.config)
    db = open_db(config.gateway.data_dir / DB_NAME)
    try:
        acl = load_access_list(db)
    finally:
        db.close()
    pack = load_pack(args.pack, args.manifest)
    print(pack.describe())
    pipeline = FacePipeline(pack)
    store = TemplateStore.open(config.gateway.data_dir)
    try:
        enroller = Enroller(pipeline, store, load_gallery(store, pipeline, acl.people), acl.people)
        jobs = list(photo_jobs(args.source))
        refused = 0
        for job in tqdm(jobs, desc="enrolling", unit="photo"):
            try:
                enroller.enroll_file(job.person_id, face_id_of(acl, job.person_id), job.path)
            except FaceError as err:
                refused += 1
                tqdm.write(f"{job.path}: {job.person_id}: {err}", file=sys.stderr)
    finally:
        store.close()
    print(
        f"enrolled {len(jobs) - refused} of {len(jobs)} photos; {len(enroller.gallery)} templates in the gallery"
    )
    return 1 if refused else 0
