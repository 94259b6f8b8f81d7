"""Where a webhook may go (shared/notify_http.py): public addresses only, every resolved address checked, the
connection made to the address that was checked, no redirect followed."""

from __future__ import annotations

import ipaddress

import pytest

from shared.exceptions import RefusedAddressError
from shared.notify_http import checked_address, refusal, webhook_issues


@pytest.mark.parametrize(
    ("address", "why"),
    [
        ("127.0.0.1", "a loopback address"),
        ("::1", "a loopback address"),
        ("::ffff:127.0.0.1", "a loopback address"),  # IPv4-mapped
        ("10.0.0.1", "a private address"),
        ("172.16.5.4", "a private address"),
        ("192.168.1.1", "a private address"),
        ("fd12::1", "a private address"),
        ("169.254.169.254", "the cloud metadata address"),
        ("fd00:ec2::254", "the cloud metadata address"),
        ("169.254.10.10", "a link-local address"),
        ("fe80::1", "a link-local address"),
        ("0.0.0.0", "a private address"),  # noqa: S104 (an address refused, not one bound),
        ("100.64.0.1", "not a public address"),  # carrier-grade NAT
        ("224.0.0.1", "not a public address"),
    ],
)
def test_internal_addresses_are_refused(address: str, why: str) -> None:
    assert refusal(ipaddress.ip_address(address)) == why


@pytest.mark.parametrize("address", ["203.0.114.1", "8.8.8.8", "2606:4700::1111"])
def test_public_addresses_pass(address: str) -> None:
    assert refusal(ipaddress.ip_address(address)) is None


def test_one_internal_address_among_public_ones_refuses_the_name() -> None:
    def resolver(host: str, port: int) -> list[str]:
        return ["8.8.8.8", "10.0.0.7"]

    with pytest.raises(RefusedAddressError, match=r"resolves to 10\.0\.0\.7, a private address"):
        checked_address("https://hooks.example.com/x", allow_private=False, resolver=resolver)
    assert checked_address("https://hooks.example.com/x", allow_private=True, resolver=resolver) == "8.8.8.8"


def test_at_submit_a_refused_address_is_a_field_issue_and_a_name_that_does_not_resolve_passes() -> None:
    def resolver(host: str, port: int) -> list[str]:
        if host == "nowhere.example":
            raise OSError("no such name")
        return ["127.0.0.1"]

    issues = webhook_issues(
        ["https://nowhere.example/a", "http://localhost:1/b"], allow_private=False, resolver=resolver
    )
    assert [i.path for i in issues] == ["notify.webhooks[1]"] and "a loopback address" in issues[0].message
    assert webhook_issues(["http://localhost:1/b"], allow_private=True, resolver=resolver) == []


@pytest.mark.parametrize("address", ["169.254.169.254", "fd00:ec2::254"])
def test_the_metadata_address_is_refused_even_where_private_addresses_are_allowed(address: str) -> None:
    with pytest.raises(RefusedAddressError, match="metadata"):
        checked_address("http://hook.example/x", allow_private=True, resolver=lambda host, port: [address])
    assert checked_address("http://hook.example/x", allow_private=True, resolver=lambda h, p: ["10.1.2.3"])
