"""Hand-made bad tokens for the negative auth scenarios."""

from __future__ import annotations

import base64
import datetime as dt
import json
import uuid

import jwt


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def claims_of(token: str) -> dict:
    return jwt.decode(token, options={"verify_signature": False})


def expired_like(token: str, secret: str) -> str:
    claims = claims_of(token)
    claims["iat"] = int((dt.datetime.now(dt.UTC) - dt.timedelta(hours=2)).timestamp())
    claims["exp"] = int((dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)).timestamp())
    return jwt.encode(claims, secret, algorithm="HS256")


def edited_payload(token: str) -> str:
    header, payload, signature = token.split(".")
    claims = claims_of(token)
    claims["handle"] = "root"
    claims["user_id"] = str(uuid.uuid4())
    return ".".join([header, _b64(json.dumps(claims).encode()), signature])


def alg_none(token: str) -> str:
    header = _b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    return f"{header}.{_b64(json.dumps(claims_of(token)).encode())}."


def other_secret(token: str) -> str:
    return jwt.encode(claims_of(token), "another-secret-that-is-long-enough-for-hs256!", algorithm="HS256")


def bad_signature(token: str) -> str:
    header, payload, signature = token.split(".")
    flipped = ("A" if signature[0] != "A" else "B") + signature[1:]
    return ".".join([header, payload, flipped])
