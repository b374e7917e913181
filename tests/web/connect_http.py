"""Calling the Connect API as any HTTP client does: a POST with a JSON (or binary protobuf)
body to ``/effigate.v1.<Service>/<Method>``, the answer parsed back into the response type."""

from __future__ import annotations

import json
import struct
from typing import Any, TypeVar

import httpx
from google.protobuf import descriptor_pool, json_format, message_factory
from google.protobuf.message import Message

M = TypeVar("M", bound=Message)

#: How long one API call over HTTP may take in the tests, in seconds.
TIMEOUT_S = 120.0


def path(service: str, method: str) -> str:
    """``/effigate.v1.TicketService/GetTicketStatus`` for ``("TicketService", ...)``."""
    return f"/effigate.v1.{service}/{method}"


def output_type(service: str, method: str) -> type[Message]:
    """The response message class of ``service.method`` (from the proto descriptors)."""
    descriptor = descriptor_pool.Default().FindServiceByName(f"effigate.v1.{service}")
    output = descriptor.methods_by_name[method].output_type
    return message_factory.GetMessageClass(output)


def headers(token: str | None, content_type: str = "application/json") -> dict[str, str]:
    """The headers of a call with ``token`` (``None``: no Authorization header)."""
    out = {"Content-Type": content_type}
    if token is not None:
        out["Authorization"] = f"Bearer {token}"
    return out


def post_json(
    base_url: str, token: str | None, service: str, method: str, request: Message
) -> httpx.Response:
    """POST ``request`` as proto3 JSON; the raw HTTP answer."""
    return httpx.post(
        base_url + path(service, method),
        content=json_format.MessageToJson(request),
        headers=headers(token),
        timeout=TIMEOUT_S,
    )


def call_json(base_url: str, token: str, service: str, method: str, request: Message) -> Any:
    """POST ``request`` as JSON, expect HTTP 200, parse the JSON answer into the method's
    response type."""
    answer = post_json(base_url, token, service, method, request)
    assert answer.status_code == 200, (method, answer.status_code, answer.text)
    assert answer.headers["content-type"] == "application/json"
    return json_format.Parse(answer.text, output_type(service, method)())


def error_of(answer: httpx.Response) -> tuple[int, str, str]:
    """HTTP status, Connect code and message of an error answer (a JSON body)."""
    assert answer.headers["content-type"] == "application/json", answer.text
    body = json.loads(answer.text)
    return answer.status_code, body["code"], body["message"]


def envelope(payload: bytes, flags: int = 0) -> bytes:
    """One Connect streaming frame: flags, big-endian length, payload."""
    return struct.pack(">BI", flags, len(payload)) + payload


def frames(body: bytes) -> list[tuple[int, bytes]]:
    """The frames (flags, payload) of a Connect streaming answer."""
    out = []
    at = 0
    while at < len(body):
        flags, size = struct.unpack(">BI", body[at : at + 5])
        out.append((flags, body[at + 5 : at + 5 + size]))
        at += 5 + size
    return out
