"""A demo-mode (dynamic) node ACL against the SCSI engine (issue 17 item 13).

Kernel reference (6.12): core_tpg_add_node_to_devs (target_core_tpg.c) walks tpg_lun_hlist,
where core_tpg_add_lun puts each new link at the head, and core_enable_device_list_for_node
puts each mapping at the head of the ACL's list that spc_emulate_report_luns walks: a
demo-mode ACL therefore reports its LUNs in link order.
"""

from __future__ import annotations

import struct

from simfs.scsi import cdbs
from simfs.scsi import status as S
from simfs.scsi.command import Nexus
from simfs.testing import Sim

TGT = "/target/iscsi/iqn.2003-01.org.linux-iscsi.sim:t1/tpgt_1"
INIT = "iqn.1994-05.com.redhat:demo"


def _site(sim: Sim, order: tuple[int, ...], devs: dict = None):
    sim.rd_device()
    sim.rd_device(name="rd1", serial=None)
    p = ""
    for part in TGT.strip("/").split("/"):
        p += "/" + part
        try:
            sim.mkdir(p)
        except Exception:  # noqa: BLE001 - the fabric and target dirs may exist already
            pass
    devs = devs or {0: "rd0", 3: "rd1"}
    for n in order:
        sim.mkdir(f"{TGT}/lun/lun_{n}")
        sim.tree.symlink(f"{TGT}/lun/lun_{n}/l", f"/target/core/rd_mcp_0/{devs[n]}")
    sim.write(f"{TGT}/attrib/generate_node_acls", "1")
    tpg = sim.tree.lookup(TGT).obj
    acl = tpg.check_initiator_node_acl(INIT)
    assert acl is not None and acl.dynamic
    return acl


def _report_luns(sim: Sim, acl) -> list[int]:
    deve = acl.deves[0]
    nexus = Nexus(initiator=INIT, port=deve.lun, isid="400001370000", mapped_lun=0, acl=acl)
    r = sim.engine.submit(nexus, deve.lun.dev, cdbs.report_luns())
    assert r.status == S.GOOD, r
    n = struct.unpack(">I", r.data[:4])[0] // 8
    return [struct.unpack(">H", r.data[8 + 8 * i:10 + 8 * i])[0] for i in range(n)]


def test_demo_mode_acl_reports_luns_in_link_order():
    with Sim() as sim:
        assert _report_luns(sim, _site(sim, (0, 3))) == [0, 3]


def test_demo_mode_acl_link_order_not_number_order():
    with Sim() as sim:
        assert _report_luns(sim, _site(sim, (3, 0))) == [3, 0]


def _tur(sim: Sim, acl, mapped_lun: int):
    deve = acl.deves[mapped_lun]
    nexus = Nexus(initiator=INIT, port=deve.lun, isid="400001370000", mapped_lun=mapped_lun,
                  acl=acl)
    r = sim.engine.submit(nexus, deve.lun.dev, bytes(6))
    return r.sense_tuple() if r.status == S.CHECK_CONDITION else r.status


def test_demo_mode_acl_creation_queues_3fh_0eh_on_the_lun_mapped_first():
    # core_tpg_add_node_to_devs maps LUN 3 (the newest link) first; mapping LUN 0 then
    # queues REPORTED LUNS DATA HAS CHANGED on LUN 3's mapping, before any session exists
    with Sim() as sim:
        acl = _site(sim, (0, 3))
        assert _tur(sim, acl, 0) == S.GOOD
        assert _tur(sim, acl, 3) == (S.UNIT_ATTENTION, 0x3F, 0x0E)
        assert _tur(sim, acl, 3) == S.GOOD


def test_explicit_stpg_skips_only_the_lun_it_arrived_on_for_a_demo_mode_acl():
    with Sim() as sim:
        acl = _site(sim, (0, 3), devs={0: "rd0", 3: "rd0"})  # one target port group
        gp = "/target/core/rd_mcp_0/rd0/alua/default_tg_pt_gp"
        sim.write(f"{gp}/alua_access_type", "3")
        for n in (0, 3):
            while _tur(sim, acl, n) != S.GOOD:
                pass
        deve0 = acl.deves[0]
        nexus0 = Nexus(initiator=INIT, port=deve0.lun, isid="400001370000", mapped_lun=0,
                       acl=acl)
        cdb, data = cdbs.set_target_port_groups([(1, 0)])  # Active/Non-optimized
        r = sim.engine.submit(nexus0, deve0.lun.dev, cdb, data)
        assert r.status == S.GOOD, r.sense_tuple()
        assert _tur(sim, acl, 0) == S.GOOD  # the LUN the STPG came in on
        # the same ACL's other LUN: a demo-mode mapping has no lun ACL to skip it by
        assert _tur(sim, acl, 3) == (S.UNIT_ATTENTION, 0x2A, 0x06)
