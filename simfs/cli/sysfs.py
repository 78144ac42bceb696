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


class _Upper:
    """Entries written into the upper layers of overlays on /sys/<top>, then mounted.

    Made before mounting: in a user namespace the machine's root-owned sysfs directories
    stay read-only through the overlay, but directories already in the upper layer are the
    command's own (as run.py does for /etc and /var).
    """

    def __init__(self, scratch: Path):
        self.scratch = scratch
        self.tops: set[str] = set()

    def _real(self, path: Path) -> Path:
        top, *rest = path.relative_to(SYS).parts
        self.tops.add(top)
        return self.scratch / f"sys_{top}.upper" / Path(*rest)

    def file(self, path: Path, text: str) -> None:
        real = self._real(path)
        real.parent.mkdir(parents=True, exist_ok=True)
        real.write_text(text + "\n")

    def dir(self, path: Path) -> None:
        self._real(path).mkdir(parents=True, exist_ok=True)

    def link(self, path: Path, target: Path) -> None:
        """A relative symlink, as sysfs makes them (``../../devices/...``)."""
        real = self._real(path)
        real.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(os.path.relpath(target, path.parent), real)

    def mount(self) -> None:
        for top in sorted(self.tops):
            upper, work = self.scratch / f"sys_{top}.upper", self.scratch / f"sys_{top}.work"
            work.mkdir()
            real = None
            if top == "devices":  # the machine's sysfs, kept reachable for _sysfs_back
                real = self.scratch / "sys_devices.real"
                real.mkdir()
                subprocess.run(["mount", "--bind", str(SYS / top), str(real)], check=True)
            subprocess.run(["mount", "-t", "overlay", "overlay", "-o",
                            f"lowerdir={SYS / top},upperdir={upper},workdir={work}",
                            str(SYS / top)], check=True)
            if real is not None:
                _sysfs_back(real, upper, SYS / top)


def _sysfs_back(real: Path, upper: Path, merged: Path) -> None:
    """Bind the machine's own directories of /sys/devices back over the overlay, all but
    those simfs adds entries to: libudev (systemd's sd-device) takes a device only when its
    directory is on sysfs (fstatfs), so under the overlay pyudev would find no block device
    at all (rtslib-fb 2.2 checks a block backstore's device with it)."""
    for entry in sorted(os.listdir(real)):
        r = real / entry
        if not r.is_dir() or r.is_symlink():
            continue
        if (upper / entry).is_dir():
            _sysfs_back(r, upper / entry, merged / entry)  # simfs adds below: go deeper
        else:
            subprocess.run(["mount", "--bind", str(r), str(merged / entry)], check=True)


def _free_host_numbers(count: int) -> list[int]:
    """SCSI host numbers after the machine's own (as a driver loaded now would get)."""
    used = [int(n[4:]) for n in os.listdir(SYS / "class/scsi_host")
            if n.startswith("host") and n[4:].isdigit()] if (SYS / "class/scsi_host").is_dir() else []
    first = max(used, default=-1) + 1
    return list(range(first, first + count))


def _fc_host(up: _Upper, host: int, port: str, device: Path, symbolic: str) -> None:
    fc = device / f"host{host}/fc_host/host{host}"
    up.file(fc / "port_name", "0x" + port)
    up.file(fc / "node_name", "0x" + ("2" + port[1:] if port[0] == "1" else port))
    up.file(fc / "port_state", "Online")
    up.file(fc / "port_type", "NPort (fabric via point-to-point)")
    up.file(fc / "symbolic_name", symbolic)
    up.link(SYS / f"class/fc_host/host{host}", fc)


def provide(scratch: Path, ports: dict[str, list[str]]) -> None:
    """Make sysfs show ``ports`` ({fabric: [canonical port]}, core.fabric.parse_hardware_ports)."""
    fc = [(f, p) for f in ("qla2xxx", "efct", "fc") for p in ports.get(f, ())]
    ib, vio = ports.get("srpt", []), ports.get("ibmvscsis", [])
    if not (fc or ib or vio):
        return
    up = _Upper(scratch)
    slot = 0
    for host, (fabric, port) in zip(_free_host_numbers(len(fc)), fc):
        if fabric == "fc":  # FCoE: the fcoe controller of a (virtual) Ethernet interface
            dev = SYS / f"devices/virtual/net/simfs-fcoe{host}/ctlr_0"
            up.dir(SYS / "bus/fcoe/devices")
            up.link(dev / "subsystem", SYS / "bus/fcoe")
            _fc_host(up, host, port, dev, f"fcoe v0.1 over simfs-fcoe{host}")
            continue
        driver, symbolic = FC_DRIVERS[fabric]
        slot += 1
        dev = SYS / f"devices/{PCI}/{PCI[3:]}:{slot:02x}.0"
        drv = SYS / f"bus/pci/drivers/{driver}"
        up.link(dev / "driver", drv)
        up.link(drv / dev.name, dev)
        _fc_host(up, host, port, dev, symbolic)
    for n, gid in enumerate(ib):
        slot += 1
        dev = SYS / f"devices/{PCI}/{PCI[3:]}:{slot:02x}.0/infiniband/simfs_ib{n}"
        up.file(dev / "ports/1/gids/0", ":".join(gid[i:i + 4] for i in range(0, 32, 4)))
        up.file(dev / "ports/1/state", "4: ACTIVE")
        up.file(dev / "ports/1/link_layer", "InfiniBand")
        up.file(dev / "node_guid", ":".join(gid[i:i + 4] for i in range(16, 32, 4)))
        up.link(SYS / f"class/infiniband/simfs_ib{n}", dev)
    if vio:
        drv = SYS / "bus/vio/drivers/ibmvscsis"
        up.link(SYS / "module/ibmvscsis/drivers/vio:ibmvscsis", drv)
        for unit in vio:
            dev = SYS / f"devices/vio/{unit}"
            up.file(dev / "devspec", f"/vdevice/v-scsi-host@{unit}")
            up.file(dev / "name", "v-scsi-host")
            up.link(drv / unit, dev)
    up.mount()
