"""An in-memory iSCSI backend for the server's tests, backed by a real simfs SCSI device.

Implements the duck-typed interface :class:`simfs.iscsi.IscsiServer` consumes (the fabric
tree's ``TreeIscsiBackend`` implements the same): one target, one TPG, demo-mode or an ACL
list, CHAP settings, LUNs mapped onto real rd_mcp devices of a :class:`simfs.testing.Sim`.
"""

from __future__ import annotations

import threading
from typing import Optional

from simfs.iscsi.errors import LoginRefused
from simfs.iscsi import pdu as P
from simfs.testing import Sim

TARGET = "iqn.2003-01.org.linux-iscsi.sim:t1"


class FakeTpg:
    def __init__(self, backend: "FakeBackend", target_name: str, tpgt: int, initiator: str):
        self.backend = backend
        self.target_name = target_name
        self.tpgt = tpgt
        self.initiator = initiator
        self.params = dict(backend.params)
        self.auth = dict(backend.auth)
        self.cmdsn_depth = backend.cmdsn_depth
        self.nopin_timeout = backend.nopin_timeout
        self.nexuses = {}

    def luns(self) -> list[int]:
        return sorted(self.backend.ports)

    def device_key(self, lun: int):
        port = self.backend.ports.get(lun)
        return port.dev if port is not None else None

    def block_size(self, lun: int) -> int:
        return self.backend.ports[lun].dev.attrib.block_size

    def _nexus(self, isid: str, lun: int):
        key = (isid, lun)
        nx = self.nexuses.get(key)
        if nx is None:
            nx = self.backend.sim.nexus(self.initiator, self.backend.ports[lun], isid=isid)
            self.nexuses[key] = nx
        return nx

    def submit(self, isid: str, lun: int, cdb: bytes, data_out: bytes, **fabric):
        self.backend.commands += 1
        self.backend.threads.append((cdb[0], threading.current_thread().name))
        port = self.backend.ports.get(lun)
        if port is None:
            from simfs.scsi.command import Result
            # LOGICAL UNIT NOT SUPPORTED, as transport_lookup_cmd_lun answers
            sense = bytearray(18)
            sense[0], sense[2], sense[7], sense[12] = 0x70, 0x05, 10, 0x25
            return Result(status=0x02, sense=bytes(sense))
        return self.backend.sim.engine.submit(self._nexus(isid, lun), port.dev, cdb, data_out,
                                              **fabric)

    def task_management(self, isid: str, function: int, lun: int, ref_itt: int) -> int:
        self.backend.tmfs.append((isid, function, lun, ref_itt))
        if function == P.TMF_LOGICAL_UNIT_RESET and lun in self.backend.ports:
            # target_tmr_work: the issuing nexus gets BUS DEVICE RESET FUNCTION OCCURRED
            dev = self.backend.ports[lun].dev
            self.backend.sim.engine.unit_attentions(dev).allocate(
                self._nexus(isid, lun).key(), 0x29, 0x03)
        return P.TMF_RSP_COMPLETE

    def session_added(self, isid: str, session=None) -> None:
        self.backend.sessions.append(("add", self.initiator, isid))
        self.backend.session_objects.append(session)

    def session_removed(self, isid: str) -> None:
        self.backend.sessions.append(("remove", self.initiator, isid))


class FakeBackend:
    def __init__(self, sim: Optional[Sim] = None, target: str = TARGET, tpgt: int = 1,
                 luns: int = 1, pages: int = 4096):
        self.sim = sim or Sim()
        self.target = target
        self.tpgt = tpgt
        self.portal_list: list[tuple] = []
        self.ports = {}
        for lun in range(luns):
            dev = self.sim.rd_device(name=f"rd{lun}", pages=pages,
                                     serial=f"a5c0cdc1-d4f5-4d27-90d2-b1f0c1d2e3f{lun}")
            self.ports[lun] = self.sim.port(dev, fabric="iSCSI", wwn=target, tpgt=tpgt, lun=lun)
        self.params: dict[str, str] = {"AuthMethod": "CHAP,None", "TargetAlias": "LIO Target"}
        self.auth = {"enforce": False, "userid": "", "password": "", "userid_mutual": "",
                     "password_mutual": ""}
        self.disc_auth = {"enforce": False, "userid": "", "password": "", "userid_mutual": "",
                          "password_mutual": ""}
        #: None = demo mode (any initiator), else the allowed initiator names
        self.acls: Optional[set] = None
        self.cmdsn_depth = 64
        self.nopin_timeout = 15
        self.commands = 0
        #: (opcode, name of the thread that ran it) per command
        self.threads: list = []
        self.tmfs: list = []
        self.sessions: list = []
        self.session_objects: list = []

    # -- the interface ---------------------------------------------------------------------------
    def portals(self) -> list[tuple]:
        return list(self.portal_list)

    def discovery(self, initiator: str, portal: tuple) -> list:
        if self.acls is not None and initiator not in self.acls:
            return []
        addrs = [f"{ip}:{port},{self.tpgt}" for ip, port in self.portal_list]
        return [(self.target, addrs)]

    def discovery_auth(self) -> dict:
        return dict(self.disc_auth)

    def login(self, target_name: str, portal: tuple, initiator: str) -> FakeTpg:
        if target_name != self.target:
            raise LoginRefused(P.STATUS_TARGET_ERR, P.LOGIN_SVC_UNAVAILABLE,
                               f"Unable to locate Target IQN: {target_name} in Storage Node")
        if self.acls is not None and initiator not in self.acls:
            raise LoginRefused(P.STATUS_INITIATOR_ERR, P.LOGIN_TGT_FORBIDDEN,
                               f"iSCSI Initiator Node: {initiator} is not authorized to access "
                               f"iSCSI target portal group: {self.tpgt}.")
        return FakeTpg(self, target_name, self.tpgt, initiator)

    def close(self) -> None:
        self.sim.close()
