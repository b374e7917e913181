"""Standard Webhooks signatures (https://www.standardwebhooks.com/), made by the
``standardwebhooks`` package: ``webhook-signature`` is ``v1,<base64 HMAC-SHA256>`` of
``<webhook-id>.<webhook-timestamp>.<body>`` under each secret (space-separated; during a
secret rotation both the new and the previous secret sign, so receivers holding either verify).
"""

from __future__ import annotations

import base64
import secrets as _random
from collections.abc import Sequence
from datetime import datetime
from math import floor

from standardwebhooks.webhooks import Webhook

SECRET_PREFIX = "whsec_"
#: Random bytes in a generated secret (256 bits).
SECRET_BYTES = 32


def new_secret() -> str:
    """A fresh signing secret: ``whsec_`` + base64 of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(_random.token_bytes(SECRET_BYTES)).decode("ascii")


def signed_headers(
    secrets: Sequence[str], webhook_id: str, timestamp: datetime, body: bytes
) -> dict[str, str]:
    """The Standard Webhooks headers of one attempt: ``webhook-id`` (the event id, the same on
    every attempt), ``webhook-timestamp`` (``timestamp``, whole Unix seconds) and
    ``webhook-signature`` (one ``v1`` signature per secret, the current first)."""
    if not secrets:
        raise ValueError("a webhook needs at least one secret to be signed with")
    if timestamp.tzinfo is None:
        raise ValueError(f"timestamp {timestamp!r} has no time zone")
    signatures = " ".join(
        Webhook(secret).sign(msg_id=webhook_id, timestamp=timestamp, data=body)
        for secret in secrets
    )
    return {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(floor(timestamp.timestamp())),
        "webhook-signature": signatures,
    }
