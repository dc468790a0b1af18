"""Which webhook URLs are refused (SSRF protection), with resolvers injected: no DNS."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pytest

from service.errors import InvalidWebhookError
from service.webhooks.urls import check_webhook_url, resolve_for_delivery

PUBLIC = "93.184.215.14"


def resolver(*addresses: str) -> Callable[[str, int], Sequence[str]]:
    """A resolver answering ``addresses`` for any name."""

    def resolve(_host: str, _port: int) -> Sequence[str]:
        return addresses

    return resolve


def unresolvable(host: str, _port: int) -> Sequence[str]:
    raise OSError(f"[Errno -2] Name or service not known: {host}")


@pytest.mark.parametrize(
    ("url", "kind"),
    [
        ("http://127.0.0.1/hook", "loopback"),
        ("http://[::1]:8080/hook", "loopback"),
        ("http://10.1.2.3/hook", "private"),
        ("https://192.168.0.10/hook", "private"),
        ("http://169.254.169.254/latest/meta-data/", "link-local"),
        ("http://[::ffff:127.0.0.1]/hook", "loopback"),
        ("http://100.64.0.1/hook", "carrier-grade NAT"),
        ("http://0.0.0.0/hook", "unspecified"),
        ("http://224.0.0.1/hook", "multicast"),
        ("http://[fd00::1]/hook", "private"),
    ],
)
def test_non_public_address_literals_are_refused(url: str, kind: str) -> None:
    with pytest.raises(InvalidWebhookError) as caught:
        check_webhook_url(url, allow_hosts=(), resolve=unresolvable)
    assert kind in caught.value.reason
    assert "GRAPHFLOW_WEBHOOK_ALLOW_HOSTS" in str(caught.value)
    assert caught.value.status_code == 422


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("ftp://example.com/hook", "only http and https"),
        ("file:///etc/passwd", "only http and https"),
        ("example.com/hook", "only http and https"),
        ("https://user:secret@example.com/hook", "user name or password"),
        ("https://token@example.com/hook", "user name or password"),
        ("https:///hook", "no host"),
        ("https://example.com:99999/hook", "invalid port"),
        ("https://example.com/" + "a" * 2048, "longer than 2048"),
        ("https://example.com/hook\r\nX-Injected: 1", "control characters"),
        ("https://exa mple.com/hook", "spaces"),
    ],
)
def test_malformed_urls_are_refused(url: str, why: str) -> None:
    with pytest.raises(InvalidWebhookError, match=why):
        check_webhook_url(url, allow_hosts=(), resolve=resolver(PUBLIC))


def test_a_name_with_any_private_address_is_refused_naming_host_and_address() -> None:
    with pytest.raises(InvalidWebhookError) as caught:
        check_webhook_url(
            "https://hooks.example.com/x", allow_hosts=(), resolve=resolver(PUBLIC, "10.0.0.7")
        )
    assert caught.value.host == "hooks.example.com"
    message = str(caught.value)
    assert "hooks.example.com" in message and "10.0.0.7" in message and "private" in message


def test_an_unresolvable_name_is_refused() -> None:
    with pytest.raises(InvalidWebhookError, match="does not resolve") as caught:
        check_webhook_url("https://nowhere.invalid/x", allow_hosts=(), resolve=unresolvable)
    assert caught.value.host == "nowhere.invalid"


def test_a_name_resolving_to_nothing_is_refused() -> None:
    with pytest.raises(InvalidWebhookError, match="does not resolve"):
        check_webhook_url("https://empty.example/x", allow_hosts=(), resolve=resolver())


def test_public_addresses_are_allowed() -> None:
    url = "https://hooks.example.com/graphflow?team=7"
    assert check_webhook_url(url, (), resolve=resolver(PUBLIC, "2606:4700::6810:84e5")) == url
    assert check_webhook_url(f"http://{PUBLIC}:8080/h", (), resolve=unresolvable)


def test_an_allowlisted_host_may_be_loopback_whatever_its_case() -> None:
    url = "http://Receiver.Internal:9000/hook"
    assert check_webhook_url(url, ["receiver.internal"], resolve=resolver("127.0.0.1")) == url
    assert check_webhook_url("http://127.0.0.1:9000/", ["127.0.0.1"], resolve=unresolvable)


def test_the_allow_list_is_exact_names_not_suffixes() -> None:
    with pytest.raises(InvalidWebhookError, match="loopback"):
        check_webhook_url(
            "http://evil.receiver.internal/", ["receiver.internal"], resolver("127.0.0.1")
        )


def test_delivery_gets_the_checked_address_and_port() -> None:
    assert resolve_for_delivery("https://hooks.example.com/x", (), resolver(PUBLIC)) == (
        PUBLIC,
        443,
    )
    assert resolve_for_delivery("http://[2606:4700::1]:81/", (), unresolvable) == (
        "2606:4700::1",
        81,
    )


def test_delivery_refuses_a_name_that_rebinds_to_a_private_address() -> None:
    url = "https://hooks.example.com/x"
    assert check_webhook_url(url, (), resolve=resolver(PUBLIC)) == url
    with pytest.raises(InvalidWebhookError, match="169.254.169.254"):
        resolve_for_delivery(url, (), resolve=resolver("169.254.169.254"))


def test_the_system_resolver_resolves_localhost_and_it_is_refused() -> None:
    # The real getaddrinfo: "localhost" needs no network.
    with pytest.raises(InvalidWebhookError, match="loopback"):
        check_webhook_url("http://localhost:8000/", ())
