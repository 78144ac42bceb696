"""The daemon's control socket: lets ``simfs scsi`` feed CDBs to a mounted tree.

One Unix stream socket per mount, ``<state-dir>/control.sock`` (mode 0600: only the user
who mounted may drive the devices). Requests and replies are one JSON object per line.
Commands run in the daemon, through the same engine fabrics use, so the configfs files
show their effect at once.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import TYPE_CHECKING

from simfs.core.fabric import TARGET_PROT_ALL
from simfs.daemon import unixsock
from simfs.scsi import Nexus, ScsiEngine, TargetPort
from simfs.scsi import status as S
from simfs.daemon.unixsock import UnixServer

if TYPE_CHECKING:
    from simfs.core.core import TargetCore
    from simfs.core.device import SeDevice

SOCKET_NAME = "control.sock"
CLI_INITIATOR = "iqn.2026-12.org.simfs:cli"


def socket_path(state_dir: Path) -> Path:
    return Path(state_dir) / SOCKET_NAME


class ControlServer(UnixServer):
    """Serves control requests on a thread per connection."""

    thread_name = "simfs-control"

    def __init__(self, core: "TargetCore", engine: ScsiEngine, state_dir: Path):
        self.core, self.engine = core, engine
        self.path = socket_path(state_dir)
        self._cli_ports: dict[tuple[int, int], TargetPort] = {}

    def _serve(self, conn: socket.socket) -> None:
        with conn, conn.makefile("rwb") as f:
            for line in f:
                try:
                    reply = self.handle(json.loads(line))
                except Exception as e:  # noqa: BLE001 - report, keep serving
                    reply = {"error": f"{type(e).__name__}: {e}"}
                f.write(json.dumps(reply).encode() + b"\n")
                f.flush()

    # -- requests -----------------------------------------------------------------------------
    def handle(self, req: dict) -> dict:
        op = req.get("op")
        if op == "ping":
            return {"ok": True, "profile": self.core.profile.name}
        if op == "scsi":
            return self._scsi(req)
        if op == "fault":
            return self._fault(req)
        if op == "modprobe":
            return self._modprobe(req)
        return {"error": f"unknown request {op!r}"}

    def _modprobe(self, req: dict) -> dict:
        """``modprobe MODULE`` for a fabric module: its fabrics register (simfs/cli/modprobe.py)."""
        from simfs.core.fabric import discover_fabrics, load_module, provides_module
        module = str(req["module"])
        with self.core.tree_lock:
            loaded = load_module(self.core, module)
            self.core.backend_modules_loaded(module.replace("-", "_"))  # a backend on its own
        if not loaded and any(provides_module(ops, module) for ops in discover_fabrics()):
            # a fabric module of a later kernel (efct before 5.14, tcm_remote before 6.4):
            # this kernel's /lib/modules has no such file
            release = self.core.kernel.uname()[2]
            return {"error": f"FATAL: Module {module} not found in directory "
                             f"/lib/modules/{release}", "not_found": True}
        return {"ok": True, "fabrics": loaded}

    def _device(self, name: str) -> "SeDevice":
        hba_name, _, dev_name = name.strip("/").partition("/")
        hba = self.core.hbas.get(hba_name)
        if hba is None or dev_name not in hba.devices:
            raise LookupError(f"no device core/{name} (make it with mkdir first)")
        return hba.devices[dev_name]

    def cli_port(self, dev: "SeDevice", initiator: str) -> TargetPort:
        """The port ``simfs scsi`` uses for a device no fabric LUN exports yet.

        It stands for a tcm_loop connection, whose protocol follows the WWN's prefix as
        tcm_loop's does: an ``iqn.`` initiator meets an iSCSI-style port, ``fc.`` FCP,
        anything else SAS. It joins the device's default target port group (so ALUA
        states apply, REPORT TARGET PORT GROUPS lists it and ``members`` shows it as
        ``loopback/<wwn>/tpgt_0/lun_0``) but it is not a configfs LUN: it does not count
        as an export, so attrib/ and wwn/ stay writable.
        """
        if initiator.startswith("iqn."):
            proto, wwn = S.PROTO_ISCSI, "iqn.2026-12.org.simfs:cli"
        elif initiator.startswith("fc."):
            proto, wwn = S.PROTO_FCP, "fc.5001405000000001"
        else:
            proto, wwn = S.PROTO_SAS, "naa.5001405000000001"
        key = (id(dev), proto)
        port = self._cli_ports.get(key)
        if port is not None and port.dev is not dev:  # a new device reusing the id()
            port = None
        if port is None:
            # a tcm_loop-style port: its sessions pass T10-PI as tcm_loop's do
            port = TargetPort(fabric="loopback", proto_id=proto, wwn=wwn, tpgt=0,
                              rtpi=0xFFFF - proto, lun=0, dev=dev, sup_prot_ops=TARGET_PROT_ALL)
            port.set_tg_pt_gp(dev.default_tg_pt_gp)
            self._cli_ports[key] = port
        return port

    def _scsi(self, req: dict) -> dict:
        dev = self._device(req["device"])
        lun = req.get("lun")
        ports = [p for p in dev.luns if lun is None or p.lun == lun]
        if req.get("port"):  # a target port by its members-file path (simfs scsi --port)
            ports = [p for p in ports if p.member_path() == req["port"]]
            if not ports:
                return {"error": f"no LUN {req['port']} exports core/{req['device']}"}
        initiator = req.get("initiator") or CLI_INITIATOR
        port = ports[0] if ports else self.cli_port(dev, initiator)
        # an initiator with a node ACL that maps this LUN comes in through its mapping, as
        # over the fabric: its mapped LUN number (what a PR registration records, and what
        # an APTPL file names), read-only flag and ACL
        deve = next((d for d in getattr(port, "deves", ()) if d.acl.name == initiator), None)
        mapping = ({} if deve is None else
                   {"mapped_lun": deve.mapped_lun, "read_only": deve.lun_access_ro,
                    "acl": deve.acl})
        nexus = Nexus(initiator=initiator, port=port, isid=req.get("isid"), **mapping)
        self._nexus_made(dev, nexus)
        res = self.engine.submit(nexus, dev, bytes.fromhex(req["cdb"]),
                                 bytes.fromhex(req.get("data_out", "")))
        return {"status": res.status, "data": res.data.hex(), "sense": res.sense.hex(),
                "port": port.member_path() if ports else "simfs-cli (loopback)"}

    def _nexus_made(self, dev: "SeDevice", nexus: Nexus) -> None:
        """The CLI's I_T nexus exists from now on, as a tcm_loop nexus once made: its
        initiator has the LUN mapped (a demo-mode ACL), so APTPL pre-registrations for it
        come back here, before its first command is even parsed, whatever that command
        does (core_tpg_add_node_to_devs -> core_scsi3_check_aptpl_registration)."""
        from simfs.scsi import pr
        with self.core.tree_lock:
            pr.note_nexus(dev, nexus)

    def _fault(self, req: dict) -> dict:
        """Inject, clear or show a device fault (docs/faults.md). ``kind`` None shows."""
        from simfs.scsi import faults
        with self.core.tree_lock:
            dev = self._device(req["device"])
            kind = req.get("kind")
            if kind is not None:
                try:
                    faults.inject(dev, kind, req.get("arg"))
                except ValueError as e:
                    return {"error": str(e)}
            return faults.describe(dev)


def request(state_dir: Path, req: dict, timeout: float = 30.0) -> dict:
    """Send one request to a mount's daemon and return its reply."""
    with unixsock.connect(socket_path(state_dir), timeout) as s:
        with s.makefile("rwb") as f:
            f.write(json.dumps(req).encode() + b"\n")
            f.flush()
            line = f.readline()
    if not line:
        raise ConnectionError("the simfs daemon closed the control socket")
    return json.loads(line)
