"""Real P-384 keys that sign tokens the way the nerd server does, for tests."""

from __future__ import annotations

import time
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec


class SigningKey:
    """A P-384 key pair that signs tokens the way the server does."""

    def __init__(self) -> None:
        self.private = ec.generate_private_key(ec.SECP384R1())
        self.public_pem = (
            self.private.public_key()
            .public_bytes(
                serialization.Encoding.PEM,
                serialization.PublicFormat.SubjectPublicKeyInfo,
            )
            .decode()
        )

    def token(self, *, ttl_s: float = 900, **claims: Any) -> str:
        now = int(time.time())
        body = {
            "iss": "nerd",
            "sub": "alice",
            "aud": "nerd",
            "iat": now,
            "nbf": now,
            "exp": int(now + ttl_s),
            "kind": "user",
            **claims,
        }
        return jwt.encode(body, self.private, algorithm="ES384")
