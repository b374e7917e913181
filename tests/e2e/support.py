"""Setup shared by the end-to-end tests: calendars, the policy and clients through the API."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import grpc
import pytest

from effigate_client import Client, catalog_pb2

SAMPLES = Path(__file__).resolve().parents[2] / "samples"
UTC_ = UTC


def at(text: str) -> datetime:
    """An aware datetime from ISO text with an offset."""
    value = datetime.fromisoformat(text)
    assert value.tzinfo is not None
    return value


@dataclass
class Setup:
    """Ids of what :func:`standard_setup` created."""

    sydney: int
    london: int
    policy: int
    acme: int
    globex: int


def standard_setup(client: Client) -> Setup:
    """The Sydney and London sample calendars, the standard MSP policy and two clients."""
    ids = {}
    for name in ("sydney-business-hours", "london-24x7"):
        body = (SAMPLES / "calendars" / f"{name}.json").read_text()
        ids[name] = client.catalog.CreateCalendar(
            catalog_pb2.CreateCalendarRequest(name=name, body_json=body)
        ).id
    policy = client.catalog.CreatePolicy(
        catalog_pb2.CreatePolicyRequest(
            name="standard-msp",
            calendar_id=ids["sydney-business-hours"],
            body_json=(SAMPLES / "policies" / "standard-msp.json").read_text(),
        )
    )
    acme = client.catalog.CreateClient(catalog_pb2.CreateClientRequest(name="Acme")).id
    globex = client.catalog.CreateClient(catalog_pb2.CreateClientRequest(name="Globex")).id
    return Setup(ids["sydney-business-hours"], ids["london-24x7"], policy.id, acme, globex)


def refused(code: grpc.StatusCode, call: object, *args: object, **kwargs: object) -> str:
    """Call and expect the status ``code``; returns the details (the error sentence)."""
    with pytest.raises(grpc.RpcError) as caught:
        call(*args, **kwargs)  # type: ignore[operator]
    assert caught.value.code() == code, caught.value.details()
    return str(caught.value.details())
