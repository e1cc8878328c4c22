"""Immutable, checksummed bundles: ``ARCHIVE/<name>/<version>/``, moved in whole or not at all.

Failed models go to ``ARCHIVE/_rejected/<name>/<version>/<attempt>/`` with their report: nothing is lost,
and nothing there is presented as validated. Model names cannot start with ``_``, so the two never meet.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from parity.core.durable import fsync_dir
from parity.core.errors import ArchiveConflictError, IntegrityError
from parity.core.records import Identity, Manifest
from parity.core.staging import staging_folder, sweep_stale
from parity.registry.loading import sha256_of

MANIFEST = "manifest.json"
#: The copy of the model version's registration record every bundle written since issue 9 holds.
REGISTRATION = "registration.json"
REJECTED = "_rejected"
_STAGING = ".staging"


@dataclass(frozen=True)
class BundleResult:
    """Where a bundle is and whether this call wrote it."""

    path: Path
    written: bool  # False: an identical bundle was already there


def _write_durably(path: Path, data: bytes) -> None:
    with open(path, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


class Archive:
    """The archive folder.

    Parameters
    ----------
    root : path-like
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    def bundle_path(self, name: str, version: int) -> Path:
        return self.root / name / str(version)

    def is_archived(self, name: str, version: int) -> bool:
        return (self.bundle_path(name, version) / MANIFEST).is_file()

    def manifest(self, name: str, version: int) -> Manifest:
        """A bundle's manifest.

        Raises
        ------
        FileNotFoundError, RecordError, RecordSchemaError
        """
        return Manifest.read(self.bundle_path(name, version) / MANIFEST)

    def write_bundle(
        self, name: str, version: int, files: dict[str, Path | bytes], identity: Identity | dict[str, str]
    ) -> BundleResult:
        """Write a bundle for a validated model version, once.

        Parameters
        ----------
        name, version : model version
        files : mapping of bundle file name to a source path or bytes
        identity : Identity or dict
            What makes this version this version (the original model's and reference data's SHA-256). A
            second call with the same identity leaves the bundle alone; a different one is refused.

        Returns
        -------
        BundleResult

        Raises
        ------
        ArchiveConflictError
            A bundle exists for this version with a different identity.
        """
        identity = Identity.model_validate(identity)
        final = self.bundle_path(name, version)
        if self.is_archived(name, version):
            return self._existing(final, identity)
        with self._staged(files, identity) as staged:
            final.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.rename(staged, final)  # atomic; fails when another writer got there first
            except OSError:
                if self.is_archived(name, version):
                    return self._existing(final, identity)
                raise
        fsync_dir(final.parent)
        return BundleResult(final, True)

    def write_rejected(
        self, name: str, version: int, files: dict[str, Path | bytes], identity: Identity | dict[str, str]
    ) -> Path:
        """Keep a failed attempt's report and artifacts, each attempt in its own folder."""
        identity = Identity.model_validate(identity)
        attempt = f"{datetime.now(UTC).strftime('%Y%m%dT%H%M%S%fZ')}-{uuid.uuid4().hex[:8]}"
        final = self.root / REJECTED / name / str(version) / attempt
        with self._staged(files, identity) as staged:
            final.parent.mkdir(parents=True, exist_ok=True)
            os.rename(staged, final)
        return final

    def sweep_staging(self) -> list[Path]:
        """Remove the staging folders of writers that are gone (a killed or crashed run).

        Returns
        -------
        list of Path
            The folders removed; a live writer's folder is never among them.
        """
        return sweep_stale(self.root / _STAGING)

    def rejected(self, name: str, version: int) -> list[Path]:
        folder = self.root / REJECTED / name / str(version)
        return sorted(folder.iterdir()) if folder.is_dir() else []

    def check(self, path: Path) -> list[str]:
        """Problems with a bundle's files against its manifest (empty when intact).

        Raises
        ------
        FileNotFoundError, RecordError, RecordSchemaError
            No manifest, or one this version of Parity cannot read.
        """
        manifest = Manifest.read(path / MANIFEST)
        problems = []
        for file, digest in manifest.files.items():
            target = path / file
            if not target.is_file():
                problems.append(f"{file}: missing")
            elif sha256_of(target) != digest:
                problems.append(f"{file}: SHA-256 differs from the manifest")
        extra = {p.name for p in path.iterdir()} - set(manifest.files) - {MANIFEST}
        problems.extend(f"{file}: not in the manifest" for file in sorted(extra))
        return problems

    def _existing(self, final: Path, identity: Identity) -> BundleResult:
        manifest = Manifest.read(final / MANIFEST)
        if manifest.identity != identity:
            raise ArchiveConflictError(
                f"{final} already holds a bundle for a different model (archived identity "
                f"{manifest.identity.to_json()}, now {identity.to_json()}). Bundles are immutable: register the new model "
                "as a new version."
            )
        problems = self.check(final)
        if problems:
            raise IntegrityError(f"{final}: the archived bundle is damaged: {'; '.join(problems)}.")
        return BundleResult(final, False)

    @contextlib.contextmanager
    def _staged(self, files: dict[str, Path | bytes], identity: Identity) -> Iterator[Path]:
        """A locked staging folder holding ``files`` and their manifest, removed unless renamed away."""
        with staging_folder(self.root / _STAGING, "") as staged:
            digests = {}
            for file, source in sorted(files.items()):
                target = staged / file
                if isinstance(source, bytes):
                    _write_durably(target, source)
                else:
                    shutil.copyfile(source, target)
                    with open(target, "rb+") as handle:
                        os.fsync(handle.fileno())
                digests[file] = sha256_of(target)
            _write_durably(staged / MANIFEST, Manifest(identity=identity, files=digests).to_bytes())
            fsync_dir(staged)
            yield staged
