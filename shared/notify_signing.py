"""Standard Webhooks signatures (https://www.standardwebhooks.com/, spec/standard-webhooks.md): each POST carries

- ``webhook-id``: the message id, the same on every retry (receivers drop duplicates by it);
- ``webhook-timestamp``: when this try was sent, integer seconds since the epoch;
- ``webhook-signature``: ``v1,`` + base64 of HMAC-SHA256 over ``<id>.<timestamp>.<body>``.

A stock verifier refuses a timestamp too far from its clock (5 minutes in the reference libraries), so a
captured delivery cannot be replayed later. The secret is ``AUTOPILOT_NOTIFY_SIGNING_KEY``: in the spec's form
``whsec_<base64 of the key bytes>`` (what the reference libraries take), or any other text, whose UTF-8 bytes
are then the key (receivers verify with ``"whsec_" + base64(text)``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac

SECRET_PREFIX = "whsec_"  # noqa: S105 (the spec's prefix, not a secret)
ID_HEADER = "webhook-id"
TIMESTAMP_HEADER = "webhook-timestamp"
SIGNATURE_HEADER = "webhook-signature"


def secret_bytes(secret: str) -> bytes:
    """The HMAC key a setting names: the base64 after ``whsec_``, else the text's own bytes."""
    if secret.startswith(SECRET_PREFIX):
        encoded = secret[len(SECRET_PREFIX) :]
        return base64.b64decode(encoded + "=" * (-len(encoded) % 4))
    return secret.encode()


def receiver_secret(secret: str) -> str:
    """The secret in the form a Standard Webhooks verifier takes (``whsec_...``)."""
    if secret.startswith(SECRET_PREFIX):
        return secret
    return SECRET_PREFIX + base64.b64encode(secret.encode()).decode()


def signature(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret_bytes(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def signed_headers(secret: str, message_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The three Standard Webhooks headers of one try."""
    return {
        ID_HEADER: message_id,
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: signature(secret, message_id, timestamp, body),
    }
