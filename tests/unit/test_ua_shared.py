"""Unit attentions per node ACL and mapped LUN, shared by an initiator's sessions
(issue 17 item 11).

Kernel reference (6.12): struct se_dev_entry's ua_list (target_core_ua.c) is the one queue
of an ACL's mapping: every session of the initiator reads and clears it, and it exists
(and fills) before any session does; target_dev_ua_allocate (target_core_device.c) walks
every LUN of the device and every mapping of each.
"""

from __future__ import annotations

from simfs.core import tmr
from simfs.scsi import status as S
from simfs.scsi.command import Nexus
from simfs.testing import Sim

TGT = "/target/iscsi/iqn.2003-01.org.linux-iscsi.sim:t1/tpgt_1"
INIT = "iqn.1994-05.com.redhat:shared"
ACL = f"{TGT}/acls/{INIT}"


def _site(sim: Sim):
    """rd0 on LUNs 0 and 1 of one TPG; the ACL maps both (mapped LUNs 0 and 1)."""
    sim.rd_device()
    p = ""
    for part in TGT.strip("/").split("/"):
        p += "/" + part
        try:
            sim.mkdir(p)
        except Exception:  # noqa: BLE001 - the fabric dir may exist already
            pass
    for n in (0, 1):
        sim.mkdir(f"{TGT}/lun/lun_{n}")
        sim.tree.symlink(f"{TGT}/lun/lun_{n}/l", "/target/core/rd_mcp_0/rd0")
    sim.mkdir(ACL)
    for n in (0, 1):
        sim.mkdir(f"{ACL}/lun_{n}")
        sim.tree.symlink(f"{ACL}/lun_{n}/m", f"{TGT}/lun/lun_{n}")
    return sim.tree.lookup(ACL).obj


def _nexus(acl, mapped_lun: int, isid: str) -> Nexus:
    deve = acl.deves[mapped_lun]
    return Nexus(initiator=acl.name, port=deve.lun, isid=isid, mapped_lun=mapped_lun, acl=acl)


def _tur(sim: Sim, nexus: Nexus):
    r = sim.engine.submit(nexus, nexus.port.dev, bytes(6))
    return r.sense_tuple() if r.status == S.CHECK_CONDITION else r.status


def test_ua_queued_before_a_session_is_reported_once_for_all_sessions():
    with Sim() as sim:
        acl = _site(sim)
        # mapping LUN 1 queued 3Fh/0Eh on LUN 0's mapping before any session existed
        s1, s2 = _nexus(acl, 0, "400001370000"), _nexus(acl, 0, "400001370001")
        assert _tur(sim, s1) == (S.UNIT_ATTENTION, 0x3F, 0x0E)
        # reported (and cleared) through one session: gone for the other as well
        assert _tur(sim, s2) == S.GOOD
        assert _tur(sim, s1) == S.GOOD


def test_lun_reset_reaches_every_mapped_lun_of_the_device():
    with Sim() as sim:
        acl = _site(sim)
        a0, a1 = _nexus(acl, 0, "400001370000"), _nexus(acl, 1, "400001370000")
        _tur(sim, a0)  # 3Fh/0Eh from mapping LUN 1
        assert _tur(sim, a0) == S.GOOD
        tmr.lun_reset(a0.port.dev)
        # LUN 1 was never used since: its mapping gets the UA all the same
        assert _tur(sim, a1) == (S.UNIT_ATTENTION, 0x29, 0x03)
        assert _tur(sim, a0) == (S.UNIT_ATTENTION, 0x29, 0x03)
