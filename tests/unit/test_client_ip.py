"""Client addresses behind proxies: the header is believed only from trusted proxies."""

from __future__ import annotations

from services.announce.client_ip import ClientAddress
from services.core.model import pack_ip


def test_direct_client_header_ignored() -> None:
    addresses = ClientAddress(["10.0.0.0/8"], "X-Forwarded-For")
    assert addresses.resolve("203.0.113.5", "198.51.100.1") == pack_ip("203.0.113.5")


def test_trusted_proxy_header_read_from_the_right() -> None:
    addresses = ClientAddress(["10.0.0.0/8"], "X-Forwarded-For")
    # client forged the first entry; the proxy appended the real one; a second proxy hop.
    assert addresses.resolve("10.1.1.1", "1.2.3.4, 198.51.100.7, 10.2.2.2") == pack_ip("198.51.100.7")


def test_no_trusted_proxies_means_socket_address() -> None:
    assert ClientAddress([], "x-real-ip").resolve("::ffff:192.0.2.1", "1.1.1.1") == \
        bytes([192, 0, 2, 1])


def test_garbage_header_falls_back_to_proxy() -> None:
    addresses = ClientAddress(["127.0.0.0/8"], "x-forwarded-for")
    assert addresses.resolve("127.0.0.1", "not-an-ip") == pack_ip("127.0.0.1")
