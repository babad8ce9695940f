"""The client address behind trusted proxies, and the truncated network that is stored."""

from __future__ import annotations

from ipaddress import ip_address

from tracking_app.client_ip import TrustedProxies, client_address, truncated_network

PROXIES = TrustedProxies(["10.0.0.0/8", "2001:db8:ffff::/48"])


def test_forwarded_for_is_believed_only_from_a_trusted_proxy() -> None:
    assert client_address("10.1.2.3", "198.51.100.7", PROXIES) == ip_address("198.51.100.7")
    assert client_address("203.0.113.5", "198.51.100.7", PROXIES) == ip_address("203.0.113.5")
    assert client_address("10.1.2.3", "198.51.100.7", TrustedProxies([])) == ip_address(
        "10.1.2.3")


def test_the_client_is_the_rightmost_address_that_is_not_a_trusted_proxy() -> None:
    # The left-most entry is whatever the client claimed; only the proxies' appends count.
    chain = "1.2.3.4, 198.51.100.7, 10.9.9.9"
    assert client_address("10.1.2.3", chain, PROXIES) == ip_address("198.51.100.7")


def test_a_malformed_chain_stops_at_the_last_trusted_hop() -> None:
    assert client_address("10.1.2.3", "garbage", PROXIES) == ip_address("10.1.2.3")
    assert client_address("10.1.2.3", "198.51.100.7, 10.0.0.9, bad", PROXIES) == ip_address(
        "10.1.2.3")
    assert client_address(None, "198.51.100.7", PROXIES) is None


def test_ipv4_mapped_and_bracketed_ipv6_addresses_are_understood() -> None:
    assert client_address("::ffff:10.1.2.3", "[2001:db8::1]", PROXIES) == ip_address(
        "2001:db8::1")


def test_stored_networks_are_truncated_to_24_and_48_bits() -> None:
    assert truncated_network(ip_address("198.51.100.77")) == "198.51.100.0/24"
    assert truncated_network(ip_address("2001:db8:abcd:12:1::9")) == "2001:db8:abcd::/48"


def test_a_forwarded_address_with_a_port_is_the_address() -> None:
    """Some proxies (Azure Application Gateway, IIS ARR) append the client's port: the client
    is still that address, not the proxy (whose network would hide every client's, from the
    network rules and the repeat rule alike)."""
    assert client_address("10.1.2.3", "40.107.5.9:53211", PROXIES) == ip_address("40.107.5.9")
    assert client_address("10.1.2.3", "198.51.100.7:443, 10.0.0.9:8080", PROXIES) == (
        ip_address("198.51.100.7"))
    assert client_address("10.1.2.3", "[2001:db8::1]:443", PROXIES) == ip_address(
        "2001:db8::1")
    for bad in ("198.51.100.7:", "198.51.100.7:port", "[2001:db8::1]443", "host.example:80"):
        assert client_address("10.1.2.3", bad, PROXIES) == ip_address("10.1.2.3"), bad
