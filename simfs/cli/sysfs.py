"""The hardware of ``simfs run --wwn FABRIC=PORT``, as sysfs shows it.

Tools list hardware fabrics' ports from sysfs, not configfs: rtslib-fb reads
``/sys/class/fc_host/host*/port_name`` and keeps a host whose PCI device's driver is qla2xxx
or efct (older rtslib-fb: whose ``symbolic_name`` starts with "QL" or "Emulex"), or whose
parent's subsystem is fcoe (tcm_fc); ``/sys/class/infiniband/*/ports/*/gids/0`` (srpt);
``/sys/module/ibmvscsis/drivers/vio:ibmvscsis/*/devspec`` (ibmvscsis). Inside the run's
namespace, overlays on /sys/class, /sys/devices, /sys/bus and /sys/module (upper layers in
the scratch tmpfs) receive those entries, laid out as the drivers lay them out; the host's
own sysfs shows through and nothing outside the namespace changes.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

SYS = Path("/sys")
PCI = "pci5f1f:00"  # a PCI domain of its own: no clash with the machine's devices
FC_DRIVERS = {"qla2xxx": ("qla2xxx", "QLE2742 FW:v9.08.02 DVR:v10.02.09.400-k"),
              "efct": ("efct", "Emulex LPe35002-M2 FV14.0.499.25 DV14.2.0.10")}


def _overlay(scratch: Path, top: str) -> None:
    name = top.strip("/").replace("/", "_")
    upper, work = scratch / f"{name}.upper", scratch / f"{name}.work"
    upper.mkdir()
    work.mkdir()
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o",
                    f"lowerdir={top},upperdir={upper},workdir={work}", top], check=True)


def _file(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n")


def _link(path: Path, target: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(target, path)


def _free_host_numbers(count: int) -> list[int]:
    """SCSI host numbers after the machine's own (as a driver loaded now would get)."""
    used = [int(n[4:]) for n in os.listdir(SYS / "class/scsi_host")
            if n.startswith("host") and n[4:].isdigit()] if (SYS / "class/scsi_host").is_dir() else []
    first = max(used, default=-1) + 1
    return list(range(first, first + count))


def _fc_host(host: int, port: str, device: Path, symbolic: str) -> None:
    fc = device / f"host{host}/fc_host/host{host}"
    _file(fc / "port_name", "0x" + port)
    _file(fc / "node_name", "0x" + ("2" + port[1:] if port[0] == "1" else port))
    _file(fc / "port_state", "Online")
    _file(fc / "port_type", "NPort (fabric via point-to-point)")
    _file(fc / "symbolic_name", symbolic)
    _link(SYS / f"class/fc_host/host{host}", os.path.relpath(fc, SYS / "class/fc_host"))


def provide(scratch: Path, ports: dict[str, list[str]]) -> None:
    """Make sysfs show ``ports`` ({fabric: [canonical port]}, core.fabric.parse_hardware_ports)."""
    fc = [(f, p) for f in ("qla2xxx", "efct", "fc") for p in ports.get(f, ())]
    ib, vio = ports.get("srpt", []), ports.get("ibmvscsis", [])
    if not (fc or ib or vio):
        return
    for top in ("/sys/class", "/sys/devices", "/sys/bus", "/sys/module"):
        _overlay(scratch, top)
    slot = 0
    for host, (fabric, port) in zip(_free_host_numbers(len(fc)), fc):
        if fabric == "fc":  # FCoE: the fcoe controller of a (virtual) Ethernet interface
            dev = SYS / f"devices/virtual/net/simfs-fcoe{host}/ctlr_0"
            _link(dev / "subsystem", os.path.relpath(SYS / "bus/fcoe", dev))
            (SYS / "bus/fcoe/devices").mkdir(parents=True, exist_ok=True)
            _fc_host(host, port, dev, f"fcoe v0.1 over simfs-fcoe{host}")
            continue
        driver, symbolic = FC_DRIVERS[fabric]
        slot += 1
        dev = SYS / f"devices/{PCI}/{PCI[3:]}:{slot:02x}.0"
        drv = SYS / f"bus/pci/drivers/{driver}"
        drv.mkdir(parents=True, exist_ok=True)
        _link(dev / "driver", os.path.relpath(drv, dev))
        _link(drv / dev.name, os.path.relpath(dev, drv))
        _fc_host(host, port, dev, symbolic)
    for n, gid in enumerate(ib):
        slot += 1
        dev = SYS / f"devices/{PCI}/{PCI[3:]}:{slot:02x}.0/infiniband/simfs_ib{n}"
        groups = ":".join(gid[i:i + 4] for i in range(0, 32, 4))
        _file(dev / "ports/1/gids/0", groups)
        _file(dev / "ports/1/state", "4: ACTIVE")
        _file(dev / "ports/1/link_layer", "InfiniBand")
        _file(dev / "node_guid", ":".join(gid[i:i + 4] for i in range(16, 32, 4)))
        _link(SYS / f"class/infiniband/simfs_ib{n}", os.path.relpath(dev, SYS / "class/infiniband"))
    if vio:
        drv = SYS / "bus/vio/drivers/ibmvscsis"
        drv.mkdir(parents=True, exist_ok=True)
        _link(SYS / "module/ibmvscsis/drivers/vio:ibmvscsis",
              os.path.relpath(drv, SYS / "module/ibmvscsis/drivers"))
        for unit in vio:
            dev = SYS / f"devices/vio/{unit}"
            _file(dev / "devspec", f"/vdevice/v-scsi-host@{unit}")
            _file(dev / "name", "v-scsi-host")
            _link(drv / unit, os.path.relpath(dev, drv))
