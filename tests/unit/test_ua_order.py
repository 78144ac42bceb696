"""core_scsi3_ua_allocate's placement of a new unit attention (issue 17 item 11).

Kernel reference (6.12, target_core_ua.c): the new UA is compared with the queue's head
only (the same UA there is dropped); behind a 29h head a higher 29h ASCQ goes first; behind
a 2Ah head a 29h goes first; otherwise (a 3Fh head ...) it goes last.
"""

from __future__ import annotations

from simfs.scsi import status as S
from simfs.scsi.ua import UnitAttentions
from simfs.testing import Sim

K = ("iqn.1994-05.com.redhat:a", "400001370000", 1)


def queue(*uas):
    q = UnitAttentions()
    for ua in uas:
        q.allocate(K, *ua)
    return q.pending(K)


def test_29h_goes_behind_a_3fh_head():
    assert queue((0x3F, 0x0E), (0x29, 0x03)) == [(0x3F, 0x0E), (0x29, 0x03)]


def test_29h_goes_ahead_of_a_2ah_head():
    assert queue((0x2A, 0x06), (0x29, 0x03)) == [(0x29, 0x03), (0x2A, 0x06)]


def test_29h_order_by_ascq_against_the_head():
    assert queue((0x29, 0x03), (0x29, 0x07)) == [(0x29, 0x07), (0x29, 0x03)]
    assert queue((0x29, 0x07), (0x29, 0x03)) == [(0x29, 0x07), (0x29, 0x03)]


def test_duplicates_are_dropped_only_at_the_head():
    assert queue((0x3F, 0x0E), (0x3F, 0x0E)) == [(0x3F, 0x0E)]
    assert queue((0x3F, 0x0E), (0x2A, 0x06), (0x2A, 0x06)) == \
        [(0x3F, 0x0E), (0x2A, 0x06), (0x2A, 0x06)]


def test_engine_reports_the_head_first():
    with Sim() as sim:
        dev = sim.rd_device()
        n = sim.nexus("iqn.1994-05.com.redhat:a", sim.port(dev), isid="400001370000")
        uas = sim.engine.unit_attentions(dev)
        uas.allocate(n.key(), 0x3F, 0x0E)
        uas.allocate(n.key(), 0x29, 0x03)
        r = sim.engine.submit(n, dev, bytes(6))
        assert r.sense_tuple() == (S.UNIT_ATTENTION, 0x3F, 0x0E)
