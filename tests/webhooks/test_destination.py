"""Which URLs an endpoint may have: http(s) only; non-public addresses only when allowed."""

from __future__ import annotations

import pytest

from effigate_engine.webhooks.destination import DestinationRefused, check_resolved, check_url


@pytest.mark.parametrize(
    "url",
    ["https://hooks.slack.com/services/T0/B0/x", "http://example.com:8080/in?x=1", "HTTPS://a.io"],
)
def test_public_http_urls_are_accepted(url: str) -> None:
    assert check_url(url, allow_private=False) == url


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("ftp://example.com/x", "http:// or https://"),
        ("file:///etc/passwd", "http:// or https://"),
        ("gopher://example.com", "http:// or https://"),
        ("javascript:alert(1)", "http:// or https://"),
        ("https://", "no host"),
        ("https://user:pw@example.com/", "credentials"),
        ("https://example.com:99999/", "not a URL"),
        ("https://example.com/a b", "white space"),
        ("http://127.0.0.1:8080/", "non-public address 127.0.0.1"),
        ("http://10.1.2.3/", "non-public"),
        ("http://169.254.169.254/latest/meta-data", "non-public"),
        ("http://[::1]/", "non-public"),
        ("http://192.168.0.1/", "non-public"),
        ("https://example.com/" + "x" * 2100, "longer than"),
    ],
)
def test_other_urls_are_refused_saying_why(url: str, why: str) -> None:
    with pytest.raises(DestinationRefused, match=why.replace("?", r"\?")):
        check_url(url, allow_private=False)


def test_private_addresses_are_accepted_only_when_the_server_allows_them() -> None:
    assert check_url("http://127.0.0.1:9/hook", allow_private=True)
    with pytest.raises(DestinationRefused):
        check_url("ftp://127.0.0.1/", allow_private=True)


def test_a_name_resolving_to_loopback_is_refused_at_delivery() -> None:
    with pytest.raises(DestinationRefused, match="non-public address"):
        check_resolved("localhost", 80, allow_private=False)
    check_resolved("localhost", 80, allow_private=True)
