"""Secrets at rest: values sealed with AES-256-GCM under a key in the data folder.

The key is 32 random bytes in ``<data>/keys/secrets.key`` (0600), made on first use.
Every replica of a deployment must share that file, as they share the signing key. A
sealed value is ``base64(nonce ‖ ciphertext ‖ tag)``; the project and the secret's
name are authenticated with it, so a sealed value moved to another row (or project)
does not open.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from nerd.errors import IntegrityError

KEY_FILE = "secrets.key"
KEY_BYTES = 32
NONCE_BYTES = 12


class SecretsBox:
    """Seals and opens secret values with one key."""

    def __init__(self, key: bytes) -> None:
        self._aead = AESGCM(key)

    @classmethod
    def in_folder(cls, keys_dir: Path) -> SecretsBox:
        """The box whose key lives in ``keys_dir``, making the key on first use."""
        return cls(_load_or_make_key(keys_dir / KEY_FILE))

    def seal(self, data: dict[str, str], *, project: str, name: str) -> str:
        nonce = secrets.token_bytes(NONCE_BYTES)
        plain = json.dumps(data, sort_keys=True).encode()
        sealed = self._aead.encrypt(nonce, plain, _associated(project, name))
        return base64.b64encode(nonce + sealed).decode()

    def open(self, sealed: str, *, project: str, name: str) -> dict[str, str]:
        raw = base64.b64decode(sealed)
        try:
            plain = self._aead.decrypt(
                raw[:NONCE_BYTES], raw[NONCE_BYTES:], _associated(project, name)
            )
        except InvalidTag:
            raise IntegrityError(
                f"secret '{name}' cannot be opened with this server's secrets key",
                hint="every server replica needs the same keys/secrets.key",
            ) from None
        data: dict[str, str] = json.loads(plain)
        return data


def _associated(project: str, name: str) -> bytes:
    return f"nerd-secret\0{project}\0{name}".encode()


def _load_or_make_key(path: Path) -> bytes:
    if path.is_file():
        return path.read_bytes()
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    key = secrets.token_bytes(KEY_BYTES)
    temp = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as file:
        file.write(key)
        file.flush()
        os.fsync(file.fileno())
    try:
        os.link(temp, path)  # a replica that raced us keeps its key; we take it
    except FileExistsError:
        pass
    finally:
        temp.unlink()
    return path.read_bytes()
