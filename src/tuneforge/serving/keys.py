"""API keys: created once and shown once, stored only as SHA-256 hashes, checked in constant time.

A key is 32 random bytes (``tf_`` + URL-safe base64), so a fast hash is enough: nothing can be
guessed from it, unlike a password that needs a slow one. The store is a JSON file written
atomically (mode 0600); a running server re-reads it when it changes, so ``tuneforge keys revoke``
takes effect without a restart.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from tuneforge.errors import ConfigError

KEY_PREFIX = "tf_"


@dataclass
class ApiKey:
    name: str
    prefix: str  # the first characters of the key, shown by `keys list` so a user can tell keys apart
    sha256: str
    created: str
    revoked: str | None = None


@dataclass(frozen=True)
class Verdict:
    status: str  # "valid", "revoked" or "unknown"
    name: str | None = None


class KeyStore:
    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path else default_keys_file()
        self._seen: tuple[int, int] | None = None  # (mtime_ns, size) of the file last read
        self._keys: list[ApiKey] = []

    # ------------------------------------------------------------------ commands

    def create(self, name: str) -> str:
        """A new key named ``name``; returns the key itself, which is never stored."""
        name = name.strip()
        if not name or any(c.isspace() for c in name):
            raise ConfigError("a key name is one word, e.g. 'billing-app'")
        keys = self.keys()
        if any(k.name == name and k.revoked is None for k in keys):
            raise ConfigError(f"{self.path}: an active key is already named '{name}'; revoke it or pick another name")
        token = KEY_PREFIX + secrets.token_urlsafe(32)
        keys.append(ApiKey(name, token[:8], _digest(token), _now()))
        self._write(keys)
        return token

    def revoke(self, name: str) -> ApiKey:
        keys = self.keys()
        active = [k for k in keys if k.name == name and k.revoked is None]
        if not active:
            known = ", ".join(sorted({k.name for k in keys if k.revoked is None})) or "none"
            raise ConfigError(f"{self.path}: no active key named '{name}' (active keys: {known})")
        for key in active:
            key.revoked = _now()
        self._write(keys)
        return active[0]

    def keys(self) -> list[ApiKey]:
        """Every key, revoked ones included; the file is re-read only when it changed."""
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            self._seen, self._keys = None, []
            return []
        if self._seen != (stat.st_mtime_ns, stat.st_size):
            self._keys = self._read()
            self._seen = (stat.st_mtime_ns, stat.st_size)
        return [ApiKey(**asdict(k)) for k in self._keys]

    def active_count(self) -> int:
        return sum(k.revoked is None for k in self.keys())

    # ------------------------------------------------------------------ checking

    def check(self, token: str) -> Verdict:
        """Compare against every stored hash (no early exit), so timing tells nothing about which matched."""
        digest = _digest(token)
        match = None
        for key in self.keys():
            if hmac.compare_digest(digest, key.sha256):
                match = key
        if match is None:
            return Verdict("unknown")
        return Verdict("revoked" if match.revoked else "valid", match.name)

    # ------------------------------------------------------------------ file

    def _read(self) -> list[ApiKey]:
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
            return [ApiKey(**entry) for entry in raw["keys"]]
        except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as error:
            raise ConfigError(f"{self.path}: not a readable tuneforge key store ({error}); it was left untouched. "
                              "Fix or move it away, then create keys again.") from None

    def _write(self, keys: list[ApiKey]) -> None:
        """Atomic replace: a reader (a running server) sees the old file or the new one, never half of one."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        text = json.dumps({"keys": [asdict(k) for k in keys]}, indent=2)
        handle, temporary = tempfile.mkstemp(dir=self.path.parent, prefix=".api_keys.", suffix=".tmp")
        try:
            os.fchmod(handle, 0o600)
            with os.fdopen(handle, "w", encoding="utf-8") as out:
                out.write(text)
                out.flush()
                os.fsync(out.fileno())
            os.replace(temporary, self.path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        self._seen = None


def default_keys_file() -> Path:
    from tuneforge.assets.cache import tuneforge_home

    return tuneforge_home() / "api_keys.json"


def bearer_token(header: str | None) -> str | None:
    """The key from an ``Authorization: Bearer <key>`` header, or None."""
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
