"""The tuneforge cache: converted models and prepared datasets, built once, reused by every run."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
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
