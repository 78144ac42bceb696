"""configfs fuzzing (sans-I/O, through Sim's tree): every writable attribute of every
object type takes hostile writes.

Each write either succeeds or raises ConfigfsError (an OSError carrying the kernel's
errno) - never another exception - and after every refused write a snapshot of the
whole tree (every directory, link and readable attribute) is byte-for-byte unchanged:
"every rejected write ... leaves the state exactly as it was" (design.md).

Payloads: random bytes, numbers at and past the u8/u16/u32/int/u64 bounds, other bases
(0x, 0, 0b, +/-), whitespace, NULs, writes above a page (configfs hands the store 4095
bytes), empty writes (EFAULT), and key=value lists built from every backend's and the
APTPL/lba_map parsers' tokens.

The short deterministic run is always on; ``SIMFS_FUZZ_LONG=1`` runs many more examples
with fresh randomness.
"""
from __future__ import annotations

import errno
import os
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from simfs.configfs import ConfigfsError
from simfs.configfs.node import Group, Symlink
from simfs.configfs.tree import AttrRef
from simfs.core.profile import get_profile
from simfs.testing import Sim

LONG = os.environ.get("SIMFS_FUZZ_LONG") == "1"
SETTINGS = settings(
    max_examples=4000 if LONG else 100,
    derandomize=not LONG,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)


class _NoSleepTime:
    """``time`` without sleeping: ALUA transition delays must not slow the fuzzer."""

    def __getattr__(self, name):
        return getattr(time, name)

    @staticmethod
    def sleep(_secs):
        return None


def build(tmp, version: str = ""):
    """A tree holding one of every object type (of ``version``; the default one if none).

    The default version must have every fabric plugin; an older one builds the fabrics it
    has, and v3.0 (no TCMU, no per-device port groups, no fabric of target_core_mod's own)
    its backends and LU groups."""
    sim = Sim(state_dir=tmp / "state", **({"profile": get_profile(version)} if version else {}))
    (tmp / "state" / "var" / "target" / "pr").mkdir(parents=True, exist_ok=True)
    (tmp / "state" / "var" / "target" / "alua").mkdir(parents=True, exist_ok=True)
    sim.rd_device()
    sim.fileio_device(tmp / "f0.img", size=1 << 20, buffered=True)
    hbas = [("iblock_0", "ib0"), ("pscsi_0", "ps0"), ("user_0", "u0"), ("rd_mcp_1", "rd_off")]
    for hba, dev in hbas if version != "v3.0" else [h for h in hbas if h[0] != "user_0"]:
        sim.mkdir(f"/target/core/{hba}")
        sim.mkdir(f"/target/core/{hba}/{dev}")
    sim.mkdir("/target/core/alua/lu_gps/lg1")
    sim.write("/target/core/alua/lu_gps/lg1/lu_gp_id", "7")
    if version == "v3.0":
        return sim
    sim.mkdir("/target/core/rd_mcp_0/rd0/alua/tg1")
    sim.write("/target/core/rd_mcp_0/rd0/alua/tg1/tg_pt_gp_id", "3")
    sim.mkdir("/target/core/fileio_0/f0/alua/tg_new")  # no id yet
    # the fabric side: an iSCSI TPG with a LUN, an ACL with a mapped LUN, a portal; and a
    # loopback target with its I_T nexus
    tpg = "/target/iscsi/iqn.2026-12.org.simfs:fuzz/tpgt_1"
    for d in (f"{tpg}/lun/lun_0", f"{tpg}/acls/iqn.2026-12.org.example:a/lun_0",
              f"{tpg}/np/127.0.0.1:1", "/target/loopback/naa.5001405000000042/tpgt_1/lun/lun_0"):
        _mkdir_p(sim, d)
    sim.tree.symlink(f"{tpg}/lun/lun_0/rd0", "/target/core/rd_mcp_0/rd0")
    sim.tree.symlink(f"{tpg}/acls/iqn.2026-12.org.example:a/lun_0/m", f"{tpg}/lun/lun_0")
    sim.write("/target/loopback/naa.5001405000000042/tpgt_1/nexus", "naa.5001405000000043")
    _other_fabrics(sim, every=not version)
    return sim


#: one TPG of every other fabric (vhost ... tcm_remote), its ACL where it has them, its nexus
FABRIC_TPGS = {
    "/target/vhost/naa.5001405000000050/tpgt_1": "naa.5001405000000051",
    "/target/xen-pvscsi/naa.5001405000000052/tpgt_1": "naa.5001405000000053",
    "/target/usb_gadget/naa.5001405000000054/tpgt_1": "naa.5001405000000055",
    "/target/qla2xxx/21:00:00:24:ff:31:4c:48/tpgt_1": "21:00:00:24:ff:31:4c:49",
    "/target/efct/10:00:00:10:9b:1a:2b:3c/tpgt_1": "10:00:00:10:9b:1a:2b:3d",
    "/target/fc/20:00:00:11:22:33:44:55/tpgt_1": "10:00:00:00:c9:11:22:33",
    "/target/srpt/0002:c903:0003:1235/tpgt_1": "0x00000000000000000002c90300031236",
    "/target/ibmvscsis/30000003/tpgt_1": None,
    "/target/remote/naa.5001405000000056/tpgt_1": "naa.5001405000000057",
}


def _other_fabrics(sim, every: bool = True) -> None:
    """One TPG of each other fabric: all of them (``every``), or those the version has."""
    from simfs.core import fabric
    fabric.set_hardware_ports(sim.core, [
        "qla2xxx=21:00:00:24:ff:31:4c:48", "efct=10:00:00:10:9b:1a:2b:3c",
        "tcm_fc=20:00:00:11:22:33:44:55", "srpt=fe80:0000:0000:0000:0002:c903:0003:1235",
        "ibmvscsis=30000003", "usb_gadget=tcm.0"])
    for module in ("tcm_vhost", "xen-scsiback", "tcm_usb_gadget", "tcm_qla2xxx", "efct",
                   "tcm_fc", "ib_srpt", "ibmvscsis", "tcm_remote"):
        loaded = fabric.load_module(sim.core, module)
        assert loaded or not every, module
    for tpg, initiator in FABRIC_TPGS.items():
        try:
            _mkdir_p(sim, f"{tpg}/lun/lun_0")
        except ConfigfsError:
            if every:
                raise
            continue                    # this version has no such fabric
        sim.tree.symlink(f"{tpg}/lun/lun_0/rd0", "/target/core/rd_mcp_0/rd0")
        if initiator and "nexus" in sim.tree.lookup(tpg).entries():
            sim.write(f"{tpg}/nexus", initiator)  # a LUN is linked: NULL is refused
        elif initiator:
            _mkdir_p(sim, f"{tpg}/acls/{initiator}/lun_0")
            sim.tree.symlink(f"{tpg}/acls/{initiator}/lun_0/m", f"{tpg}/lun/lun_0")


def _mkdir_p(sim, path: str) -> None:
    parts = path.strip("/").split("/")
    for i in range(1, len(parts) + 1):
        if not sim._exists("/" + "/".join(parts[:i])):
            sim.mkdir("/" + "/".join(parts[:i]))


def attributes(group: Group, out: list) -> list:
    for name in list(group.entries()):
        child = group.children.get(name)
        if child is None:
            out.append(AttrRef(group, group.attribute(name)))
        elif isinstance(child, Group):
            attributes(child, out)
    return out


def snapshot(sim) -> dict:
    """Every node of the tree and what every readable attribute shows."""
    snap: dict = {}

    def walk(g: Group):
        snap[g.path() + "/"] = sorted(g.entries())
        for name in list(g.entries()):
            child = g.children.get(name)
            if isinstance(child, Symlink):
                snap[child.path()] = "-> " + child.text()
            elif isinstance(child, Group):
                walk(child)
            else:
                ref = AttrRef(g, g.attribute(name))
                if ref.attr.show is None:
                    continue
                try:
                    snap[ref.path()] = sim.tree._show(ref)
                except ConfigfsError as e:
                    snap[ref.path()] = f"errno {e.errno}"
    with sim.tree.lock:
        walk(sim.tree.root)
    return snap


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    import simfs.scsi.alua as scsi_alua
    import simfs.core.alua as target_alua
    mp.setattr(target_alua, "time", _NoSleepTime())
    mp.setattr(scsi_alua, "sleep", lambda s: None)
    sim = build(tmp_path_factory.mktemp("fuzzcfg"))
    refs = attributes(sim.tree.root, [])
    writable = sorted({r.path() for r in refs if r.attr.store is not None})
    yield sim, writable
    sim.close()
    mp.undo()


STATS = {"writes": 0, "refused": 0, "accepted": 0}
#: the tree's snapshot after the last refused write (still current: nothing changed since)
_LAST: dict = {}


def hostile_write(env, path: str, data: bytes) -> None:
    sim, _ = env
    before = _LAST.pop("snap", None) or snapshot(sim)
    STATS["writes"] += 1
    try:
        sim.tree.write_attr(path, data)
    except ConfigfsError as e:
        assert isinstance(e, OSError) and e.errno in errno.errorcode, (path, data, e)
        STATS["refused"] += 1
        after = snapshot(sim)
        changed = [k for k in set(before) | set(after) if before.get(k) != after.get(k)]
        # The kernel's one refusal that changes state: target_dev_alias_store and
        # target_dev_udev_path_store snprintf() the value into the device *before*
        # checking it is empty, so a write starting with NUL blanks the value (shown
        # as "\n" once set) and then fails with EINVAL. simfs does the same.
        if (path.rsplit("/", 1)[-1] in ("alias", "udev_path") and not data.split(b"\0")[0]
                and changed == [path]):
            assert after[path] in (b"\n", b""), after[path]
            changed = []
        assert not changed, (f"refused write {data[:80]!r} to {path} (errno {e.errno}) "
                             f"changed {changed[:5]}: "
                             f"{[(before.get(k), after.get(k)) for k in changed[:2]]}")
        _LAST["snap"] = after
    else:
        STATS["accepted"] += 1
        # every attribute still reads (or refuses) cleanly after an accepted write
        _LAST["snap"] = snapshot(sim)


# -- payload strategies -------------------------------------------------------------------------
BOUNDS = [0, 1, 2, 7, 8, 255, 256, 511, 512, 4095, 4096, 65535, 65536, 0x7FFFFFFF,
          0x80000000, 0xFFFFFFFF, 0x100000000, 0x7FFFFFFFFFFFFFFF, 0x8000000000000000,
          0xFFFFFFFFFFFFFFFF, 0x10000000000000000, 10 ** 30]
numbers = st.one_of(st.sampled_from(BOUNDS), st.sampled_from(BOUNDS).map(lambda v: -v),
                    st.integers(-2 ** 70, 2 ** 70))


@st.composite
def number_text(draw):
    v = draw(numbers)
    fmt = draw(st.sampled_from(["{}", "0x{:x}", "0X{:X}", "0{:o}", "0b{:b}", "+{}", " {}",
                                "{} ", "\t{}\n", "{}\n\n", "{}\0junk", "{}abc", "0{}",
                                "{}.0", "{}e3", "00x{:x}"]))
    try:
        text = fmt.format(v)
    except ValueError:
        text = str(v)
    if draw(st.booleans()):
        text += "\n"
    return text.encode()


whitespace = st.sampled_from([b" ", b"\n", b"\t", b"\n\n", b"\r\n", b" \n", b"\0", b"\0\n",
                              b"\x0b", b"  1  ", b"1\n2\n", b"-", b"+", b"0x", b"0x\n"])
huge = st.one_of(
    st.integers(4096, 9000).map(lambda n: b"1" * n),
    st.integers(4096, 9000).map(lambda n: b"1" + b" " * n),
    st.integers(4090, 4100).map(lambda n: b"a" * n + b"\n"),
    st.binary(min_size=4096, max_size=5000),
)

KEYS = ["rd_pages", "rd_nullio", "rd_dummy", "fd_dev_name", "fd_dev_size", "fd_buffered_io",
        "fd_async_io", "udev_path", "readonly", "force", "scsi_host_id", "scsi_channel_id",
        "scsi_target_id", "scsi_lun_id", "dev_config", "dev_size", "hw_block_size",
        "hw_max_sectors", "nl_reply_supported", "max_data_area_mb", "data_pages_per_blk",
        "cmd_ring_size_mb", "initiator_fabric", "initiator_node", "initiator_sid",
        "sa_res_key", "target_fabric", "target_node", "res_holder", "res_type", "res_scope",
        "res_all_tg_pt", "tpgt", "port_rtpi", "mapped_lun", "target_lun", "bogus"]
values = st.one_of(number_text().map(lambda b: b.decode("latin-1").strip("\n")),
                   st.sampled_from(["", "/nonexistent", "/dev/null", "/tmp", "iqn.x:y",
                                    "a" * 300, "1,2", "=", "0x", "-1"]),
                   st.text(max_size=12))


@st.composite
def key_values(draw):
    pairs = draw(st.lists(st.tuples(st.sampled_from(KEYS), values), max_size=5))
    sep = draw(st.sampled_from([",", "\n", " ", ", "]))
    text = sep.join(f"{k}={v}" for k, v in pairs)
    if draw(st.booleans()):
        text += "\n"
    return text.encode("utf-8", "surrogatepass")


@st.composite
def lba_map_text(draw):
    """``<segment size> <segment multiplier>`` then ``<start> <end> <pg>:<state> ...``."""
    lines = [" ".join(str(draw(numbers)) for _ in range(draw(st.integers(0, 3))))]
    for _ in range(draw(st.integers(0, 3))):
        parts = [str(draw(numbers)), str(draw(numbers))]
        parts += [f"{draw(st.integers(-1, 70000))}:{draw(st.sampled_from('AOSUNTX?'))}"
                  for _ in range(draw(st.integers(0, 3)))]
        lines.append(" ".join(parts))
    return "\n".join(lines).encode()


payloads = {
    "random": st.binary(min_size=1, max_size=80),
    "numbers": number_text(),
    "whitespace": whitespace,
    "huge": huge,
    "key_values": key_values(),
}


def paths(env):
    return st.sampled_from(env[1])


# -- the fuzz tests --------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", sorted(payloads))
def test_every_attribute_survives(env, kind):
    strategy = payloads[kind]

    @given(path=paths(env), data=strategy)
    @SETTINGS
    def run(path, data):
        hostile_write(env, path, data)

    run()


def test_every_writable_attribute_once_per_payload_class(env):
    """Deterministic sweep: each writable attribute of each object type gets each class
    of hostile value at least once (the random runs above pick paths at random)."""
    fixed = [b"\xff\xfe\x00garbage", b"18446744073709551616", b"-1", b" 0x",
             b"4294967296\n", b"1" * 5000]
    for path in env[1]:
        for data in fixed:
            hostile_write(env, path, data)


def test_every_fabric_is_fuzzed(env):
    """The fabric files of issue 13 are among the fuzzed attributes."""
    writable = env[1]
    for name in ("nexus", "attrib/fabric_prot_type", "param/alias", "enable",
                 "attrib/generate_node_acls", "attrib/session_deletion_wait",
                 "attrib/srp_sq_size", "attrib/use_srq", "fabric_prot_type", "port_name",
                 "node_name", "tag"):
        assert any(p.endswith("/" + name) and not p.startswith(("target/iscsi", "target/loop"))
                   for p in writable), name
    assert "target/srpt/discovery_auth/rdma_cm_port" in writable
    for tpg in FABRIC_TPGS:
        assert any(p.startswith(tpg.lstrip("/") + "/") for p in writable), tpg


def test_empty_write_is_efault(env):
    sim, writable = env
    before = snapshot(sim)
    for path in writable:
        with pytest.raises(ConfigfsError) as ei:
            sim.tree.write_attr(path, b"")
        assert ei.value.errno == errno.EFAULT
    assert snapshot(sim) == before


@given(data=lba_map_text())
@SETTINGS
def test_lba_map(env, data):
    hostile_write(env, "target/core/rd_mcp_0/rd0/lba_map", data)


@given(data=key_values(), dev=st.sampled_from(["rd_mcp_0/rd0", "fileio_0/f0", "iblock_0/ib0",
                                                "pscsi_0/ps0", "user_0/u0",
                                                "rd_mcp_1/rd_off"]))
@SETTINGS
def test_aptpl_metadata_and_control(env, data, dev):
    hostile_write(env, f"target/core/{dev}/pr/res_aptpl_metadata", data)
    if dev != "rd_mcp_1/rd_off":  # keep one device unconfigured and writable
        hostile_write(env, f"target/core/{dev}/control", data)


def test_dbroot_and_top_level(env, tmp_path):
    for data in [b"/nonexistent\n", b"relative", b"/dev/null", b"\0", b"/" * 5000,
                 str(tmp_path).encode() + b"\n" * 3, b"/tmp/\xff\xfe"]:
        hostile_write(env, "target/dbroot", data)


def test_report(env):
    """Something was accepted and something refused (the fuzzer reached the stores)."""
    assert STATS["writes"] > 500
    assert STATS["refused"] > 100 and STATS["accepted"] > 10, STATS
    print(f"\nconfigfs fuzz: {STATS['writes']} writes over {len(env[1])} attributes, "
          f"{STATS['refused']} refused with the state unchanged, {STATS['accepted']} accepted")
