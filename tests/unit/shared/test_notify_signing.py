"""Standard Webhooks signatures (shared/notify_signing.py) agree with the stock library's, for both forms of
the secret the setting may hold."""

from __future__ import annotations

import base64
from datetime import UTC, datetime

import pytest
from standardwebhooks import Webhook

from shared.notify_signing import receiver_secret, signature, signed_headers

WHSEC = "whsec_" + base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()


@pytest.mark.parametrize("secret", [WHSEC, "a plain text key"])
def test_the_signature_is_the_stock_librarys(secret: str) -> None:
    body = b'{"id": "r-1:completed", "type": "autopilot.run.completed"}'
    at = datetime(2026, 12, 2, 7, 0, tzinfo=UTC)
    stock = Webhook(receiver_secret(secret)).sign("r-1:completed", at, body.decode())
    assert signature(secret, "r-1:completed", int(at.timestamp()), body) == stock
    headers = signed_headers(secret, "r-1:completed", int(at.timestamp()), body)
    assert headers == {"webhook-id": "r-1:completed", "webhook-timestamp": "1796194800", "webhook-signature": stock}


def test_a_whsec_secret_is_passed_to_receivers_as_it_is() -> None:
    assert receiver_secret(WHSEC) == WHSEC
    assert receiver_secret("k") == "whsec_" + base64.b64encode(b"k").decode()
