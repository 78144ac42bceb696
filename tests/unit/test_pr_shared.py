"""Persistent reservations shared between two nodes through a PR store (simfs.scsi.pr_store,
a simfs extension; LIO keeps PR state per node).

Two in-process simfs cores ("nodes") export one device each, in the layout of two gateways
(the same target IQN, node A's LUN behind TPG 1, node B's behind TPG 2). Their backend
devices hand the engine one shared :class:`MemoryPrStore`. That store is a fake: it stands
for the RADOS object the ``user:rbd`` handler uses with ``;pr=shared`` (tested against a real
Ceph in tests/e2e/test_multinode.py), with the same compare-and-swap contract, so the engine's
side (reload on every command, PR OUT as a transaction, rerun after a lost race) is tested
here in seconds and without a cluster.
"""

from __future__ import annotations

import struct
import threading

import pytest

from simfs.scsi import cdbs
from simfs.scsi import status as S
from simfs.scsi.pr_store import MemoryPrStore
from simfs.scsi.sense import SenseError, StatusError
from simfs.testing import Sim

TGT = "iqn.2026-12.org.simfs:gw"
IA, IB = "iqn.1994-05.com.example:host-a", "iqn.1994-05.com.example:host-b"
KA, KB = 0xA1, 0xB2
REGISTER, RESERVE, RELEASE, CLEAR, PREEMPT = range(5)
WE = 1  # Write Exclusive


class Node:
    """One simfs node: its own core and engine, one device, its gateway's TPG."""

    def __init__(self, tmp, tpgt: int, store):
        self.sim = Sim(state_dir=tmp)
        self.dev = self.sim.rd_device()
        if store is not None:
            self.dev.bdev.pr_store = lambda: store  # what a handler's backend device hands over
        self.port = self.sim.port(self.dev, fabric="iSCSI", wwn=TGT, tpgt=tpgt)
        self.a = self.sim.nexus(IA, self.port, isid="400001370000")
        self.b = self.sim.nexus(IB, self.port, isid="400001370001")

    def submit(self, nexus, cdb, data=b""):
        return self.sim.engine.submit(nexus, self.dev, cdb, data)

    def out(self, nexus, sa, **kw):
        cdb, params = cdbs.pr_out(sa, **kw)
        return self.submit(nexus, cdb, params)

    def keys(self, nexus):
        r = self.submit(nexus, cdbs.pr_in(0, 8192))
        assert r.status == S.GOOD, r
        gen, n = struct.unpack(">II", r.data[:8])
        return gen, [struct.unpack(">Q", r.data[8 + i:16 + i])[0] for i in range(0, n, 8)]

    def write(self, nexus):
        return self.submit(nexus, cdbs.write_16(0, 1), bytes(512))

    def read(self, nexus):
        return self.submit(nexus, cdbs.read_16(0, 1))


def ok(r):
    assert r.status == S.GOOD, (r.status, r.sense_tuple())


def conflict(r):
    assert r.status == S.RESERVATION_CONFLICT, (r.status, r.sense_tuple())


@pytest.fixture
def nodes(tmp_path):
    store = MemoryPrStore()
    a, b = Node(tmp_path / "a", 1, store), Node(tmp_path / "b", 2, store)
    yield a, b, store
    a.sim.close()
    b.sim.close()


def test_a_registration_through_a_is_seen_through_b(nodes):
    a, b, _ = nodes
    ok(a.out(a.a, REGISTER, sa_key=KA))
    assert a.keys(a.a) == (1, [KA])
    assert b.keys(b.b) == (1, [KA])  # one generation, one key list
    ok(b.out(b.b, REGISTER, sa_key=KB))
    assert a.keys(a.a) == (2, [KA, KB]) == b.keys(b.a)
    # the pr/ files of node A show the shared state once A has seen a command
    assert "0x%016x" % KB in a.sim.read("/target/core/rd_mcp_0/rd0/pr/res_pr_registered_i_pts")


def test_a_reservation_through_a_is_enforced_through_b(nodes):
    a, b, _ = nodes
    ok(a.out(a.a, REGISTER, sa_key=KA))
    ok(a.out(a.a, RESERVE, key=KA, pr_type=WE))
    ok(a.write(a.a))
    # the same initiator through B is another I_T nexus: not the holder, not registered
    conflict(b.write(b.a))
    conflict(b.write(b.b))
    ok(b.read(b.b))  # Write Exclusive lets others read
    # a non-holder's RESERVE through B conflicts with A's reservation
    ok(b.out(b.b, REGISTER, sa_key=KB))
    conflict(b.out(b.b, RESERVE, key=KB, pr_type=WE))


def test_preempt_through_b_fences_the_holder_on_a(nodes):
    a, b, _ = nodes
    ok(a.out(a.a, REGISTER, sa_key=KA))
    ok(a.out(a.a, RESERVE, key=KA, pr_type=WE))
    ok(b.out(b.b, REGISTER, sa_key=KB))
    gen = b.keys(b.b)[0]
    ok(b.out(b.b, PREEMPT, key=KB, sa_key=KA, pr_type=WE))
    ok(b.write(b.b))  # B's initiator holds it now
    conflict(a.write(a.a))  # the old holder is fenced on node A
    conflict(a.out(a.a, REGISTER, key=KA, sa_key=KA))  # its key is gone
    assert a.keys(a.a) == b.keys(b.b) == (gen + 1, [KB])
    r = a.submit(a.a, cdbs.pr_in(1, 8192))  # READ RESERVATION through A names B's key
    assert r.status == S.GOOD and struct.unpack(">Q", r.data[8:16])[0] == KB


def test_a_lost_race_runs_again_on_the_winners_state(nodes):
    """Node B stores between node A's load and A's store: A's compare-and-swap fails, A's
    command runs again on B's state and both registrations survive with distinct
    generations."""
    a, b, store = nodes
    raced = []
    real_store = store.store

    def racing_store(version, blob):
        if not raced:
            raced.append(1)
            ok(b.out(b.b, REGISTER, sa_key=KB))  # B wins the race
        return real_store(version, blob)

    store.store = racing_store
    ok(a.out(a.a, REGISTER, sa_key=KA))
    assert raced
    assert a.keys(a.a) == b.keys(b.b) == (2, [KB, KA])


def test_without_a_store_pr_stays_per_node(tmp_path):
    """The default: LIO's per-node state, unchanged."""
    a, b = Node(tmp_path / "a", 1, None), Node(tmp_path / "b", 2, None)
    try:
        ok(a.out(a.a, REGISTER, sa_key=KA))
        ok(a.out(a.a, RESERVE, key=KA, pr_type=WE))
        assert a.keys(a.a) == (1, [KA])
        assert b.keys(b.b) == (0, [])
        ok(b.write(b.b))
    finally:
        a.sim.close()
        b.sim.close()


class Unreachable(MemoryPrStore):
    """A store whose cluster stopped answering: the backend's status (BUSY, as the
    user:rbd handler gives for a timed-out operation) or its sense."""

    def __init__(self, exc):
        super().__init__()
        self.exc, self.down = exc, False

    def load(self):
        if self.down:
            raise self.exc
        return super().load()

    def store(self, version, blob):
        if self.down:
            raise self.exc
        return super().store(version, blob)


@pytest.mark.parametrize("exc,status,sense", [
    (StatusError(S.BUSY), S.BUSY, None),
    (SenseError(S.MEDIUM_ERROR, 0x0C, 0x00), S.CHECK_CONDITION, (S.MEDIUM_ERROR, 0x0C, 0x00)),
])
def test_an_unreachable_store_ends_commands_and_changes_nothing(tmp_path, exc, status, sense):
    store = Unreachable(exc)
    a = Node(tmp_path / "a", 1, store)
    try:
        ok(a.out(a.a, REGISTER, sa_key=KA))
        store.down = True
        for r in (a.out(a.b, REGISTER, sa_key=KB), a.write(a.a),
                  a.submit(a.a, cdbs.pr_in(0, 8192))):
            assert r.status == status and (sense is None or r.sense_tuple() == sense), r
        store.down = False
        assert a.keys(a.a) == (1, [KA])  # nothing changed, nothing lost
        ok(a.write(a.a))
    finally:
        a.sim.close()


def test_an_unknown_format_is_refused(nodes):
    a, _, store = nodes
    store.store(0, b'{"format": 99}')
    r = a.write(a.a)
    assert r.status == S.BUSY
    assert any("shared PR state has format 99, expected 1" in ln for ln in a.sim.log.lines)


def test_a_slow_store_holds_up_only_its_own_device(tmp_path):
    """The store is read before the engine's tree lock: while one device waits for its
    cluster, another device of the same node answers."""
    entered, gate = threading.Event(), threading.Event()

    class Slow(MemoryPrStore):
        def load(self):
            if not gate.is_set():
                entered.set()
                gate.wait(30)
            return super().load()

    a = Node(tmp_path / "a", 1, Slow())
    other = a.sim.rd_device(name="rd1")
    port = a.sim.port(other, fabric="iSCSI", wwn=TGT, tpgt=3)
    try:
        results = []
        t = threading.Thread(target=lambda: results.append(a.write(a.a)))
        t.start()
        assert entered.wait(30)
        r = a.sim.engine.submit(a.sim.nexus(IB, port), other, cdbs.test_unit_ready())
        still_waiting = t.is_alive()
        gate.set()
        t.join()
        assert r.status == S.GOOD and still_waiting
        ok(results[0])
    finally:
        gate.set()
        a.sim.close()


def test_a_late_load_does_not_bring_back_an_older_state(nodes):
    """Two commands load concurrently; the one that read the older state finishes last:
    the node keeps the newer state (versions only grow)."""
    from simfs.scsi import pr, pr_store
    a, b, store = nodes
    ok(a.out(a.a, REGISTER, sa_key=KA))
    stale = store.load()
    ok(b.out(b.b, REGISTER, sa_key=KB))
    assert a.keys(a.a)[1] == [KA, KB]  # A loaded the newer state
    rt = pr.runtime(a.dev)
    real_load = store.load
    store.load = lambda: stale  # the late one
    try:
        pr_store.prefetch(a.dev, rt)
    finally:
        store.load = real_load
    assert rt.loaded[1] == store.load()[0]
    pr_store.refresh(a.dev, rt)
    assert [r.key for r in a.dev.pr.registrations] == [KA, KB]
