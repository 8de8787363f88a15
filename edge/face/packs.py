"""Model packs: a face detector and a face recognizer plus a manifest that says which files, their sha-256,
the embedding size, the input normalisation, the default thresholds and the license.

Why a manifest with hashes: a gateway decides who walks through a door from these weights. A truncated copy,
a different release of "the same" model or a swapped file would silently change who matches; so every file
is hashed on load and a pack that does not match is refused. The manifests live in the repository
(config/model-packs/), the weights in a directory the operator fills (menwei never downloads them); the
license is carried along so the console and the logs can say which weights are in use (the InsightFace
weights are for non-commercial use only).
"""

from __future__ import annotations

import hashlib
import logging
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from edge.face.errors import PackError, PackProblem

log = logging.getLogger(__name__)

MANIFEST_DIR = Path(__file__).resolve().parents[2] / "config" / "model-packs"
_HASH_CHUNK = 1 << 20


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DetectorSpec(_Strict):
    kind: Literal["scrfd", "yunet"]
    file: str
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    input_size: int = Field(default=640, ge=64, le=1920)
    score_threshold: float = Field(default=0.5, gt=0, lt=1)


class RecognizerSpec(_Strict):
    kind: Literal["arcface"]
    file: str
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    embedding_size: int = Field(ge=32, le=4096)
    input_mean: float
    input_std: float = Field(gt=0)


class Thresholds(_Strict):
    match: float = Field(gt=-1, lt=1, description="Lowest cosine similarity that counts as a match.")
    margin: float = Field(ge=0, lt=1, description="Best match must beat the second-best person by this.")


class PackManifest(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    license: str
    commercial_use: bool
    detector: DetectorSpec
    recognizer: RecognizerSpec
    thresholds: Thresholds


@dataclass(frozen=True, slots=True)
class ModelPack:
    """A manifest whose files were found and verified in `directory`."""

    manifest: PackManifest
    directory: Path

    @property
    def name(self) -> str:
        return self.manifest.name

    @property
    def detector_path(self) -> Path:
        return self.directory / self.manifest.detector.file

    @property
    def recognizer_path(self) -> Path:
        return self.directory / self.manifest.recognizer.file

    def describe(self) -> str:
        """One line for the console and the log: which pack, under which license."""
        use = "commercial use allowed" if self.manifest.commercial_use else "NOT for commercial use"
        return f"face model pack {self.name} ({self.manifest.license}; {use})"


def read_manifest(path: Path) -> PackManifest:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PackError(PackProblem.MANIFEST_MISSING, str(path)) from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as err:
        raise PackError(PackProblem.MANIFEST_INVALID, f"{path}: {err}") from err
    try:
        return PackManifest.model_validate(data)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise PackError(PackProblem.MANIFEST_INVALID, f"{path}: {where}: {first['msg']}") from err


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def load_pack(directory: Path, manifest: Path | str | None = None) -> ModelPack:
    """Verify the pack in `directory` against its manifest and return it.

    `manifest` is a path to a manifest file, or the name of one in config/model-packs/; by default the
    directory's own name (…/insightface_s_int8 -> config/model-packs/insightface_s_int8.toml).
    Raises PackError naming the first file that is missing or does not match.
    """
    if manifest is None:
        manifest = directory.name
    manifest_path = manifest if isinstance(manifest, Path) else MANIFEST_DIR / f"{manifest}.toml"
    spec = read_manifest(manifest_path)
    for label, name, expected in (
        ("detector", spec.detector.file, spec.detector.sha256),
        ("recognizer", spec.recognizer.file, spec.recognizer.sha256),
    ):
        path = directory / name
        if Path(name).name != name:
            raise PackError(PackProblem.MANIFEST_INVALID, f"{label} file {name!r} must be a plain file name")
        try:
            actual = sha256_file(path)
        except FileNotFoundError:
            raise PackError(PackProblem.FILE_MISSING, f"{label} {path}") from None
        except OSError as err:
            raise PackError(PackProblem.FILE_MISSING, f"{label} {path}: {err.strerror}") from err
        if actual != expected:
            raise PackError(
                PackProblem.HASH_MISMATCH, f"{label} {path}: sha256 {actual}, manifest says {expected}"
            )
    pack = ModelPack(spec, directory)
    log.info("%s verified in %s", pack.describe(), directory)
    return pack
