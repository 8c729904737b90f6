"""The server's P-384 signing key: made on first start, kept in ``<data>/keys``."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

log = logging.getLogger(__name__)

KEY_FILE = "signing.pem"


@dataclass(frozen=True)
class SigningKey:
    """The private key, its public half as PEM, and the public key's fingerprint."""

    private_key: ec.EllipticCurvePrivateKey
    public_pem: str
    fingerprint: str

    @property
    def public_key(self) -> ec.EllipticCurvePublicKey:
        return self.private_key.public_key()


def fingerprint(public_key: ec.EllipticCurvePublicKey) -> str:
    """``SHA256:<hex>`` of the key's DER SubjectPublicKeyInfo."""
    der = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return "SHA256:" + hashlib.sha256(der).hexdigest()


def public_pem(public_key: ec.EllipticCurvePublicKey) -> str:
    return public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


def ensure_signing_key(keys_dir: Path) -> SigningKey:
    """Load the key in ``keys_dir``, making one first if there is none."""
    path = keys_dir / KEY_FILE
    if not path.exists():
        _create_key_file(keys_dir, path)
    private_key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(private_key, ec.EllipticCurvePrivateKey) or not isinstance(
        private_key.curve, ec.SECP384R1
    ):
        raise ValueError(f"{path} does not hold an EC P-384 private key")
    public = private_key.public_key()
    return SigningKey(private_key, public_pem(public), fingerprint(public))


def _create_key_file(keys_dir: Path, path: Path) -> None:
    keys_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(keys_dir, 0o700)
    pem = ec.generate_private_key(ec.SECP384R1()).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    temp = keys_dir / f".{KEY_FILE}.{secrets.token_hex(4)}"
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
        handle.flush()
        os.fsync(handle.fileno())
    # A link cannot replace an existing file: of two servers starting at once,
    # the first key wins and both use it.
    with contextlib.suppress(FileExistsError):
        os.link(temp, path)
        log.info("key.created path=%s", path)
    temp.unlink()
