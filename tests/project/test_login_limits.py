"""Password guessing is limited per account and per client address, on the log-in page, the
admin's log-in and the token API, and rotating X-Forwarded-For does not get around it."""

from __future__ import annotations

import ipaddress
import time
import uuid

import httpx
import pytest
from django.test import Client
from rest_framework.test import APIClient

from organizations.models import ApiToken

pytestmark = pytest.mark.django_db

ACCOUNT_LIMIT = 5
ADDRESS_LIMIT = 12
# Seconds: short, so the "after the cool-off" half needs no long sleep, yet long enough for the
# 40 attempts before it on a busy machine.
COOL_OFF = 4
TOKEN_URL = "/api/v1/auth/token"


@pytest.fixture(autouse=True)
def _small_limits(settings, request):
    settings.LOGIN_FAILURES_PER_ACCOUNT = ACCOUNT_LIMIT
    settings.LOGIN_FAILURES_PER_ADDRESS = ADDRESS_LIMIT
    settings.LOGIN_FAILURE_WINDOW_SECONDS = 60
    settings.LOGIN_LOCKOUT_SECONDS = COOL_OFF
    if "live_daphne" not in request.fixturenames:
        # 40 wrong passwords need not cost 40 real PBKDF2 runs in this process (a live daphne
        # keeps the real hasher, so the users it checks are created with it).
        settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def page_login(client: Client, username: str, password: str, **extra):
    return client.post("/login/", {"username": username, "password": password}, **extra)


@pytest.fixture
def token():
    # One client for the test: a new one per request would load the middleware (and scan the
    # static files) each time, slower than the cool-off.
    api = APIClient()

    def token(username: str, password: str, **extra):
        return api.post(
            TOKEN_URL, {"username": username, "password": password}, format="json", **extra
        )

    return token


def wait_out_the_cool_off() -> None:
    time.sleep(COOL_OFF + 0.2)


def test_login_page_locks_the_account_says_how_long_and_lets_the_owner_in_after(alice):
    client = Client()
    started = time.monotonic()
    responses = [page_login(client, "alice", f"guess-{n}") for n in range(40)]
    assert time.monotonic() - started < COOL_OFF, "too slow to see the lock before it ends"
    wrong = [r for r in responses if r.status_code == 200]
    locked = [r for r in responses if r.status_code == 429]
    assert len(wrong) == ACCOUNT_LIMIT - 1 and len(locked) == 40 - len(wrong)
    assert "didn&#x27;t match" in wrong[0].content.decode()
    page = locked[0].content.decode()
    expected = f"Too many failed log-in attempts for this account. Try again in {COOL_OFF} seconds."
    assert expected in page
    assert locked[0]["Retry-After"] == str(COOL_OFF)
    assert 1 <= int(locked[-1]["Retry-After"]) <= COOL_OFF

    # The right password is refused while the lock lasts, with the same words.
    refused = page_login(client, "alice", "alice-password")
    assert refused.status_code == 429
    assert "Try again in" in refused.content.decode()
    assert "_auth_user_id" not in client.session

    wait_out_the_cool_off()
    response = page_login(client, "alice", "alice-password")
    assert response.status_code == 302 and response["Location"] == "/"
    assert client.session["_auth_user_id"] == str(alice.pk)


def test_token_api_locks_with_json_429_and_retry_after_then_works_after_the_cool_off(alice, token):
    started = time.monotonic()
    codes = [token("alice", f"guess-{n}").status_code for n in range(40)]
    assert time.monotonic() - started < COOL_OFF, "too slow to see the lock before it ends"
    assert codes == [401] * (ACCOUNT_LIMIT - 1) + [429] * (40 - ACCOUNT_LIMIT + 1)

    refused = token("alice", "alice-password")
    assert refused.status_code == 429
    assert refused["Content-Type"] == "application/json"
    body = refused.json()
    assert set(body) == {"error", "code", "retry_after"}
    assert body["code"] == "locked_out"
    assert 1 <= body["retry_after"] == int(refused["Retry-After"]) <= COOL_OFF
    assert body["error"].startswith(
        "Too many failed log-in attempts for this account. Try again in "
    )
    assert not ApiToken.objects.filter(user=alice).exists()

    wait_out_the_cool_off()
    assert token("alice", "alice-password").status_code == 201


def test_the_account_limit_follows_the_person_across_addresses_and_spellings(alice, token):
    # Guessing from many addresses still counts against the one account.
    for n in range(ACCOUNT_LIMIT - 1):
        assert token("alice", "guess", REMOTE_ADDR=f"198.51.100.{n + 1}").status_code == 401
    response = token("ALICE", "guess", REMOTE_ADDR="198.51.100.99")
    assert response.status_code == 429
    assert response.json()["code"] == "locked_out"


def test_a_locked_account_does_not_lock_other_accounts_from_another_address(alice, bob, token):
    attacker = {"REMOTE_ADDR": "198.51.100.1"}
    for _ in range(ACCOUNT_LIMIT):
        token("alice", "guess", **attacker)
    assert token("alice", "alice-password", **attacker).status_code == 429
    assert token("bob", "bob-password", REMOTE_ADDR="198.51.100.2").status_code == 201
    client = Client(REMOTE_ADDR="198.51.100.2")
    assert page_login(client, "bob", "bob-password").status_code == 302


def test_a_success_clears_the_accounts_failures_but_not_the_addresses(alice, token):
    for _ in range(ACCOUNT_LIMIT - 1):
        assert token("alice", "guess").status_code == 401
    assert token("alice", "alice-password").status_code == 201
    # The account starts afresh ...
    for _ in range(ACCOUNT_LIMIT - 1):
        assert token("alice", "guess").status_code == 401
    # ... while the address kept counting: 2 × (limit − 1) failures so far.
    remaining = ADDRESS_LIMIT - 2 * (ACCOUNT_LIMIT - 1)
    codes = [token(f"user-{n}", "guess").status_code for n in range(remaining)]
    assert codes == [401] * (remaining - 1) + [429]


def test_the_address_limit_holds_across_many_usernames(alice, token):
    attacker = {"REMOTE_ADDR": "203.0.113.9"}
    responses = [token(f"user-{n}", "guess", **attacker) for n in range(30)]
    codes = [r.status_code for r in responses]
    assert codes == [401] * (ADDRESS_LIMIT - 1) + [429] * (30 - ADDRESS_LIMIT + 1)
    assert "from your network address" in responses[-1].json()["error"]
    # Alice's right password from that address waits too; from her own address she is let in.
    assert token("alice", "alice-password", **attacker).status_code == 429
    assert token("alice", "alice-password", REMOTE_ADDR="198.51.100.5").status_code == 201
    # The log-in page shares the same count.
    response = page_login(Client(), "alice", "alice-password", **attacker)
    assert response.status_code == 429
    assert "from your network address" in response.content.decode()


def test_an_ipv6_client_rotating_through_its_own_64_is_one_address(alice, token):
    codes = [
        token(f"user-{n}", "guess", REMOTE_ADDR=f"2001:db8:1:2::{n + 1:x}").status_code
        for n in range(ADDRESS_LIMIT + 3)
    ]
    assert codes == [401] * (ADDRESS_LIMIT - 1) + [429] * 4
    # The next /64 is someone else.
    assert token("alice", "alice-password", REMOTE_ADDR="2001:db8:1:3::1").status_code == 201


def test_rotating_x_forwarded_for_from_an_untrusted_peer_is_still_limited(alice, token):
    codes = [
        token(
            f"user-{n}",
            "guess",
            REMOTE_ADDR="203.0.113.9",
            HTTP_X_FORWARDED_FOR=f"10.{n}.{n}.{n}",
            HTTP_X_REAL_IP=f"10.{n}.0.1",
            HTTP_FORWARDED=f"for=10.0.{n}.1",
        ).status_code
        for n in range(40)
    ]
    assert codes == [401] * (ADDRESS_LIMIT - 1) + [429] * (40 - ADDRESS_LIMIT + 1)


def test_behind_a_trusted_proxy_each_real_client_is_limited_on_its_own(alice, settings, token):
    settings.TRUSTED_PROXIES = [ipaddress.ip_network("10.0.0.1/32")]
    proxy = {"REMOTE_ADDR": "10.0.0.1"}
    # The first client rotates what it writes into X-Forwarded-For itself; the proxy appends
    # the address it really saw, and that is what counts.
    first = [
        token(f"user-{n}", "guess", HTTP_X_FORWARDED_FOR=f"6.6.6.{n}, 203.0.113.1", **proxy)
        for n in range(ADDRESS_LIMIT)
    ]
    assert [r.status_code for r in first] == [401] * (ADDRESS_LIMIT - 1) + [429]
    second = token("alice", "alice-password", HTTP_X_FORWARDED_FOR="203.0.113.2", **proxy)
    assert second.status_code == 201


def test_the_admin_log_in_is_limited_and_says_so(alice):
    alice.is_staff = True
    alice.save()
    client = Client()
    for _ in range(ACCOUNT_LIMIT):
        client.post("/admin/login/", {"username": "alice", "password": "guess"})
    response = client.post("/admin/login/", {"username": "alice", "password": "alice-password"})
    assert response.status_code == 200  # the admin re-renders its form
    assert "Too many failed log-in attempts for this account." in response.content.decode()
    assert "_auth_user_id" not in client.session


def test_an_operator_can_lift_a_lock_early(alice, token):
    from project.login_limits import login_lockout_clear

    for _ in range(ACCOUNT_LIMIT):
        token("alice", "guess")
    assert token("alice", "alice-password").status_code == 429
    login_lockout_clear(username="Alice")
    assert token("alice", "alice-password").status_code == 201

    attacker = {"REMOTE_ADDR": "2001:db8::7"}
    for n in range(ADDRESS_LIMIT):
        token(f"user-{n}", "guess", **attacker)
    assert token("alice", "alice-password", **attacker).status_code == 429
    login_lockout_clear(address="2001:DB8:0::7")
    assert token("alice", "alice-password", **attacker).status_code == 201


def test_unknown_usernames_lock_like_real_ones(token):
    # A lockout must not tell which accounts exist.
    codes = [token("nobody-here", "guess").status_code for _ in range(ACCOUNT_LIMIT)]
    assert codes == [401] * (ACCOUNT_LIMIT - 1) + [429]


# --- through a real daphne: the address daphne hands over is the peer, never a header -------


def _token_over_http(base: str, username: str, password: str, **headers: str) -> httpx.Response:
    return httpx.post(
        f"{base}{TOKEN_URL}",
        json={"username": username, "password": password},
        headers=headers,
        timeout=30,
    )


LIVE_LIMITS = {
    "LOGIN_FAILURES_PER_ACCOUNT": "3",
    "LOGIN_FAILURES_PER_ADDRESS": "6",
    "LOGIN_LOCKOUT_SECONDS": "60",
}


def test_live_rotating_x_forwarded_for_gets_no_new_address(live_daphne, alice):
    server = live_daphne(**LIVE_LIMITS)
    responses = [
        _token_over_http(
            server.url,
            f"user-{n}",
            "guess",
            **{"X-Forwarded-For": str(ipaddress.IPv4Address(uuid.uuid4().int % 2**32))},
        )
        for n in range(40)
    ]
    codes = [r.status_code for r in responses]
    assert codes == [401] * 5 + [429] * 35, server.log()[-2000:]
    assert responses[-1].json()["code"] == "locked_out"
    assert 50 <= int(responses[-1].headers["Retry-After"]) <= 60


def test_live_trusted_proxy_keeps_two_clients_apart(live_daphne, alice):
    server = live_daphne(DJANGO_TRUSTED_PROXIES="127.0.0.1", **LIVE_LIMITS)
    first = [
        _token_over_http(server.url, f"user-{n}", "guess", **{"X-Forwarded-For": "203.0.113.1"})
        for n in range(6)
    ]
    assert [r.status_code for r in first] == [401] * 5 + [429], server.log()[-2000:]
    assert "network address" in first[-1].json()["error"]
    second = _token_over_http(
        server.url, "alice", "alice-password", **{"X-Forwarded-For": "203.0.113.2"}
    )
    assert second.status_code == 201
