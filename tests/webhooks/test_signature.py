"""Signatures made for every attempt verify with the ``standardwebhooks`` verifier alone."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from effigate_engine.webhooks.signature import new_secret, signed_headers

BODY = b'{"specversion":"1.0","id":"0b7c","type":"com.effigate.sla.breached"}'


def test_a_generated_secret_is_whsec_and_32_random_bytes() -> None:
    secrets = {new_secret() for _ in range(100)}
    assert len(secrets) == 100
    for secret in secrets:
        assert secret.startswith("whsec_")
        assert len(base64.b64decode(secret.removeprefix("whsec_"))) == 32


def test_the_receiver_verifies_the_headers_and_body() -> None:
    secret = new_secret()
    headers = signed_headers([secret], "evt-1", datetime.now(UTC), BODY)
    assert headers["webhook-id"] == "evt-1"
    assert headers["webhook-signature"].startswith("v1,")
    assert Webhook(secret).verify(BODY, headers)["type"] == "com.effigate.sla.breached"


def test_another_secret_a_changed_body_or_id_or_an_old_timestamp_do_not_verify() -> None:
    secret = new_secret()
    now = datetime.now(UTC)
    headers = signed_headers([secret], "evt-1", now, BODY)
    with pytest.raises(WebhookVerificationError):
        Webhook(new_secret()).verify(BODY, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(BODY + b" ", headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(BODY, {**headers, "webhook-id": "evt-2"})
    stale = signed_headers([secret], "evt-1", now - timedelta(minutes=10), BODY)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(BODY, stale)


def test_during_a_rotation_receivers_holding_either_secret_verify() -> None:
    new, old = new_secret(), new_secret()
    headers = signed_headers([new, old], "evt-1", datetime.now(UTC), BODY)
    assert len(headers["webhook-signature"].split(" ")) == 2
    Webhook(new).verify(BODY, headers)
    Webhook(old).verify(BODY, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(new_secret()).verify(BODY, headers)


def test_no_secret_or_a_naive_timestamp_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one secret"):
        signed_headers([], "evt-1", datetime.now(UTC), BODY)
    with pytest.raises(ValueError, match="time zone"):
        signed_headers([new_secret()], "evt-1", datetime(2026, 1, 1), BODY)
