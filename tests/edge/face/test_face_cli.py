"""`menwei face enroll` against a gateway's own data directory, with real photos."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge.cli import main
from edge.gateway import DB_NAME
from edge.model import AccessList, Credential, CredentialKind, Person
from edge.store.access_store import save_access_list
from edge.store.db import open_db

ROOT = Path(__file__).resolve().parents[3]


def test_face_enroll_folder_reports_each_refusal(
    tmp_path: Path,
    models_dir: Path,
    photos: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    config = tmp_path / "gw.toml"
    demo = (ROOT / "config" / "demo.toml").read_text()
    config.write_text(demo.replace('data_dir = "../var/demo"', f'data_dir = "{data}"', 1))
    monkeypatch.delenv("STATE_DIRECTORY", raising=False)
    acl = AccessList.build(
        version=1,
        people=[
            Person("obama", "Obama", face_consent=True),
            Person("biden", "Biden", face_consent=False),
            Person("kit", "Kit", face_consent=True),
        ],
        credentials=[Credential(CredentialKind.FACE, "tpl-obama", "obama")],
    )
    db = open_db(data / DB_NAME)
    save_access_list(db, acl)
    db.close()
    folder = tmp_path / "photos"
    for person, source in (
        ("obama", photos / "obama" / "obama.jpg"),
        ("biden", photos / "biden" / "biden.jpg"),
        ("kit", photos / "_multi" / "kit_with_rose.jpg"),
    ):
        (folder / person).mkdir(parents=True)
        (folder / person / source.name).symlink_to(source)
    monkeypatch.setenv("MENWEI_SECRET_FACE_KEY", "11" * 32)

    code = main(
        [
            "face",
            "enroll",
            str(folder),
            "--config",
            str(config),
            "--pack",
            str(models_dir / "opencv_yunet_sface"),
        ]
    )

    out, err = capsys.readouterr()
    assert code == 1
    assert "opencv_yunet_sface (YuNet: MIT; SFace: Apache-2.0; commercial use allowed)" in out
    assert "enrolled 1 of 3 photos" in out
    assert "biden: person has not consented" in err
    assert "kit: more than one face" in err
    from edge.face.templates import TemplateStore

    store = TemplateStore.open(data, bytes.fromhex("11" * 32))
    [template] = store.load("opencv_yunet_sface")
    assert (template.person_id, template.face_id) == ("obama", "tpl-obama")
