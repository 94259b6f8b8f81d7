"""Where a webhook may go (shared/notify_http.py): public addresses only, every resolved address checked, the
connection made to the address that was checked, no redirect followed."""

from __future__ import annotations

import ipaddress
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from shared.exceptions import RefusedAddressError
from shared.notify_http import checked_address, post, refusal, webhook_issues


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


class _Recorder:
    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                recorder.requests.append({"path": self.path, "host": self.headers["Host"], "body": body})
                self.send_response(307)
                self.send_header("Location", "http://127.0.0.1:9/elsewhere")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def test_the_post_goes_to_the_checked_address_and_follows_no_redirect() -> None:
    recorder = _Recorder()
    try:
        resolved: list[str] = []

        def resolver(host: str, port: int) -> list[str]:
            resolved.append(host)
            return ["127.0.0.1"]

        # A name the system cannot resolve: the request arrives only because it went to the checked address.
        url = f"http://rebind.invalid:{recorder.port}/hook?token=t"
        status = post(url, b"{}", {"Content-Type": "application/json"}, allow_private=True, resolver=resolver)
        assert status == 307 and resolved == ["rebind.invalid"]  # resolved once, for the check
        (got,) = recorder.requests
        assert got["host"] == f"rebind.invalid:{recorder.port}" and got["path"] == "/hook?token=t"
        with pytest.raises(RefusedAddressError):
            post(url, b"{}", {}, allow_private=False, resolver=resolver)
        assert len(recorder.requests) == 1
    finally:
        recorder.server.shutdown()


def test_a_receiver_that_trickles_its_answer_is_cut_off_at_the_tries_budget() -> None:
    import socket
    import time

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    stop = threading.Event()

    def trickle() -> None:
        conn, _ = listener.accept()
        conn.recv(65536)
        conn.sendall(b"HTTP/1.1 200 OK\r\n")
        while not stop.is_set():  # one header byte at a time, each well within a read timeout
            try:
                conn.sendall(b"X")
            except OSError:
                return
            time.sleep(0.05)
        conn.close()

    threading.Thread(target=trickle, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/hook"
        with pytest.raises(TimeoutError, match=r"no complete answer within 0\.5 s"):
            post(url, b"{}", {}, allow_private=True, timeout_s=0.5)
    finally:
        stop.set()
        listener.close()
