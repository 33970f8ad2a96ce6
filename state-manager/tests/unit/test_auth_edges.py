"""Without a server: which Host names a listening address serves, and the failed-key tracker."""

from __future__ import annotations

from exosphere_server.api.host_check import host_allowed, host_name
from exosphere_server.api.lockout import Lockouts
from exosphere_server.config import allowed_hosts_for

LOOPBACK = ("localhost", "127.0.0.1", "[::1]")


def test_allowed_hosts_follow_the_listening_address() -> None:
    assert allowed_hosts_for("127.0.0.1") == LOOPBACK
    assert allowed_hosts_for("localhost") == LOOPBACK
    assert allowed_hosts_for("10.0.0.5") == ("10.0.0.5", *LOOPBACK)
    assert allowed_hosts_for("fd00::5") == ("[fd00::5]", *LOOPBACK)
    assert allowed_hosts_for("0.0.0.0") == ("*",) and allowed_hosts_for("::") == ("*",)
    assert allowed_hosts_for("0.0.0.0", ("exo.example",)) == ("exo.example",)


def test_host_names_lose_their_port_and_match_patterns() -> None:
    assert host_name("[::1]:8000") == "[::1]" and host_name("Example.COM:80") == "example.com"
    assert host_name("::1") == "::1"  # unbracketed IPv6 is not a valid Host; it matches no bracketed name
    assert host_allowed("a.corp.example", ("*.corp.example",))
    assert not host_allowed("corp.example", ("*.corp.example",))
    assert not host_allowed("evilcorp.example", ("*.corp.example",))


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_failures_lock_out_after_the_limit_and_guessing_keeps_the_lock() -> None:
    clock = Clock()
    lockouts = Lockouts(max_failures=3, window_s=60, lockout_s=10, clock=clock)
    lockouts.record_failure("a")
    lockouts.record_failure("a")
    assert lockouts.seconds_left("a") == 0
    lockouts.record_failure("a")
    assert lockouts.seconds_left("a") == 10 and lockouts.seconds_left("b") == 0
    clock.now += 9
    lockouts.record_failure("a")  # still guessing: the lock-out counts from the latest wrong key
    clock.now += 9
    assert lockouts.seconds_left("a") == 1
    clock.now += 1
    assert lockouts.seconds_left("a") == 0


def test_failures_outside_the_window_do_not_add_up() -> None:
    clock = Clock()
    lockouts = Lockouts(max_failures=3, window_s=60, lockout_s=10, clock=clock)
    for _ in range(10):
        lockouts.record_failure("a")
        lockouts.record_failure("a")
        clock.now += 61
    assert lockouts.seconds_left("a") == 0


def test_the_tracker_forgets_the_longest_quiet_address_when_full() -> None:
    lockouts = Lockouts(max_failures=1, window_s=60, lockout_s=60, capacity=100, clock=Clock())
    for i in range(1000):
        lockouts.record_failure(f"10.0.{i // 256}.{i % 256}")
    assert len(lockouts) == 100
    assert lockouts.seconds_left("10.0.3.231") > 0 and lockouts.seconds_left("10.0.0.0") == 0
