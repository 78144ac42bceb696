"""The iSCSI server's poll before its loop sleeps (simfs.iscsi.idle_poll): how the window
adapts, and that a poll ends as soon as a registered socket has input."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from simfs.iscsi.idle_poll import GROW_START, IdlePoll, PollWindow


def test_the_window_starts_closed_grows_on_short_pauses_and_stops_at_the_maximum():
    w = PollWindow(100e-6)
    assert w.window == 0.0
    w.slept(40e-6)                      # a pause a poll could have caught
    assert w.window == GROW_START
    w.slept(40e-6)
    assert w.window == 2 * GROW_START
    w.slept(40e-6)
    assert w.window == 4 * GROW_START
    w.slept(40e-6)                      # the window (40 us) covers the pause: it stays
    assert w.window == 4 * GROW_START
    w.slept(60e-6)
    assert w.window == 8 * GROW_START
    w.slept(60e-6)
    assert w.window == 8 * GROW_START
    w.slept(90e-6)
    assert w.window == 100e-6           # never beyond the maximum
    w.slept(99e-6)
    assert w.window == 100e-6


def test_long_pauses_shrink_the_window_to_nothing():
    w = PollWindow(100e-6)
    w.window = 80e-6
    w.slept(5e-3)
    assert w.window == 40e-6
    w.slept(1.0)
    assert w.window == 20e-6
    w.slept(1.0)
    assert w.window == 10e-6
    w.slept(1.0)
    assert w.window == 0.0              # an idle target does not poll
    w.slept(1.0)
    assert w.window == 0.0


def test_a_zero_maximum_never_opens_the_window():
    w = PollWindow(0.0)
    for idle in (1e-6, 1e-5, 1e-3):
        w.slept(idle)
        assert w.window == 0.0
    assert not IdlePoll(0).enabled
    assert IdlePoll(100).enabled


@pytest.fixture
def pair():
    a, b = socket.socketpair()
    yield a, b
    a.close()
    b.close()


def test_a_poll_ends_as_soon_as_a_socket_has_input(pair):
    a, b = pair
    p = IdlePoll(10_000)                # 10 ms: long enough to tell a catch from a timeout
    p.add(a.fileno(), "conn")
    p.window.window = 10e-3
    t = threading.Timer(0.002, b.send, (b"x",))
    t.start()
    t0 = time.perf_counter()
    p.rest()
    took = time.perf_counter() - t0
    t.join()
    assert (p.caught, p.missed) == (1, 0)
    assert took < 8e-3
    # input came while polling: nothing was slept, so nothing to learn
    p.arrived()
    assert p.window.window == 10e-3


def test_a_missed_poll_sleeps_and_the_next_input_teaches_the_window(pair):
    a, b = pair
    p = IdlePoll(100)
    p.add(a.fileno(), "conn")
    p.window.window = 10e-6
    p.rest()                            # nothing comes within 10 us
    assert (p.caught, p.missed) == (0, 1)
    p.arrived()                         # at once: within the maximum, beyond the window
    assert p.window.window == 20e-6
    p.rest()
    time.sleep(0.01)                    # far beyond the maximum
    p.arrived()
    assert p.window.window == 10e-6
    p.arrived()                         # no sleep in between: no change
    assert p.window.window == 10e-6


def test_no_spin_when_told_and_a_closed_window_does_not_poll(pair):
    a, b = pair
    p = IdlePoll(100)
    p.add(a.fileno(), "conn")
    b.send(b"x")
    p.rest()                            # window 0: straight to sleep, input or not
    assert (p.caught, p.missed) == (0, 0)
    p.window.window = 50e-6
    p.rest(spin=False)                  # a worker holds a command: its completion wakes us
    assert (p.caught, p.missed) == (0, 0)
    p.rest()
    assert (p.caught, p.missed) == (1, 0)


def test_only_the_registrant_takes_a_socket_number_out(pair):
    a, b = pair
    p = IdlePoll(100)
    p.add(a.fileno(), "old")
    p.add(a.fileno(), "new")            # the number was reused by a newer connection
    p.remove(a.fileno(), "old")         # the old connection's late goodbye
    p.window.window = 50e-6
    b.send(b"x")
    p.rest()
    assert p.caught == 1                # still polled for the newer connection
    p.remove(a.fileno(), "new")
    p.rest()
    assert p.missed == 1
