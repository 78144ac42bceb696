"""Persistent-reservation state shared between nodes (a simfs extension, not LIO).

LIO keeps a device's registrations and reservation in the memory of the one kernel that
exports it; two gateways exporting one distributed volume each enforce their own. A backend
can offer a *PR store* instead (``BackendDevice.pr_store()``, off unless the backend's device
is configured for it; docs/multinode.md shows one on Ceph): one copy of the SPC-3 state (registrations, the holder, its type and scope,
the PRgeneration) kept where every node reaches it. The engine never learns what the store
is; it only meets this interface:

``load() -> (version, blob)``
    the latest state: its version (an integer that grows with every store; 0 before the
    first) and the bytes last stored (None when nothing was ever stored).
``store(version, blob) -> bool``
    replace the state only if it is still at ``version`` (compare-and-swap); False when
    another node changed it first.

Either may raise ``simfs.scsi.sense.SenseError`` or ``StatusError`` (a store that cannot be
reached ends the command with the backend's own status).

How the engine uses it: every command loads the state before it runs (:func:`prefetch`,
outside the engine's tree lock) and its reservation check meets that state
(:func:`refresh`); PERSISTENT RESERVE OUT runs on the latest state and stores
the result with compare-and-swap, running again on the new state when another node won the
race (:func:`transaction`). Unit attentions, SPC-2 RESERVE/RELEASE, APTPL files and
pre-registrations stay with the node, as they are in LIO.
"""

from __future__ import annotations

import json
import threading
from typing import TYPE_CHECKING, Callable, Optional, Protocol

from simfs.scsi.command import Nexus, TargetPort
from simfs.scsi.sense import StatusError
from simfs.scsi import status as S

if TYPE_CHECKING:
    from simfs.core.device import SeDevice
    from simfs.scsi.pr import PrRuntime

#: the format written into the blob; a node meeting another refuses to guess
FORMAT = 1
#: compare-and-swap rounds before a PR OUT gives up with BUSY (each lost round means another
#: node's PR OUT committed, so this is only reached under a storm of them)
MAX_ROUNDS = 16


class PrStore(Protocol):
    """What a backend hands the engine to share PR state (see the module docstring)."""

    def load(self) -> tuple[int, Optional[bytes]]: ...

    def store(self, version: int, blob: bytes) -> bool: ...


class MemoryPrStore:
    """A compare-and-swap cell in this process: what two in-process devices share in the
    unit tests, and the reference semantics a real store (RADOS) must give."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._version = 0
        self._blob: Optional[bytes] = None

    def load(self) -> tuple[int, Optional[bytes]]:
        with self._lock:
            return self._version, self._blob

    def store(self, version: int, blob: bytes) -> bool:
        with self._lock:
            if version != self._version:
                return False
            self._version += 1
            self._blob = blob
            return True


def store_of(dev: "SeDevice") -> Optional[PrStore]:
    """The device's PR store, or None for LIO's per-node state."""
    bdev = getattr(dev, "bdev", None)
    get = getattr(bdev, "pr_store", None)
    return get() if get is not None else None


# -- the blob -------------------------------------------------------------------------------------
_REG_FIELDS = ("fabric", "initiator", "isid", "key", "generation", "all_tg_pt", "target_wwn",
               "tpgt", "rtpi", "lun", "mapped_lun", "aptpl", "proto_id", "res_type",
               "res_scope")


def encode(dev: "SeDevice", rt: "PrRuntime") -> bytes:
    """The shared part of the device's PR state, as JSON bytes."""
    pr = dev.pr
    regs = pr.registrations
    holder = next((i for i, r in enumerate(regs) if r is pr.holder), None)
    doc = {
        "format": FORMAT,
        "generation": pr.generation,
        "res_type": pr.res_type,
        "res_scope": pr.res_scope,
        "holder": holder,
        "registrations": [{f: getattr(r, f) for f in _REG_FIELDS} for r in regs],
        "reg_active": sorted([*acl, lun] for acl, lun in rt.reg_active),
    }
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def decode(dev: "SeDevice", rt: "PrRuntime", blob: Optional[bytes]) -> None:
    """Make the device's PR state the one in ``blob`` (None: nothing registered)."""
    from simfs.scsi.pr import Registration  # pr imports this module
    doc = json.loads(blob) if blob else {"format": FORMAT}
    if doc.get("format") != FORMAT:
        dev.log.err(f"simfs: shared PR state has format {doc.get('format')!r}, "
                    f"expected {FORMAT}")
        raise StatusError(S.BUSY, why="unknown shared PR format")
    regs = []
    for d in doc.get("registrations", []):
        reg = Registration(**{f: d[f] for f in _REG_FIELDS})
        reg.nexus = Nexus(initiator=reg.initiator, isid=reg.isid, mapped_lun=reg.mapped_lun,
                          port=_port(dev, reg))
        regs.append(reg)
    pr = dev.pr
    pr.registrations[:] = regs
    h = doc.get("holder")
    pr.holder = regs[h] if h is not None else None
    for r in regs:
        r.res_holder = r is pr.holder
    pr.res_type, pr.res_scope = doc.get("res_type", 0), doc.get("res_scope", 0)
    pr.generation = doc.get("generation", 0)
    rt.reg_active = {(tuple(a[:4]), a[4]) for a in doc.get("reg_active", [])}
    # the shared object is what persists: this node's APTPL file is not read back
    pr.pre_registrations.clear()


def _port(dev: "SeDevice", reg) -> TargetPort:
    """This node's port of the registration's TPG when it has one (its unit attentions
    reach the sessions there), else a stand-in naming the other node's port."""
    for p in dev.luns:
        if (p.fabric, p.wwn, p.tpgt, p.lun) == (reg.fabric, reg.target_wwn, reg.tpgt, reg.lun):
            return p
    return TargetPort(fabric=reg.fabric, proto_id=reg.proto_id, wwn=reg.target_wwn,
                      tpgt=reg.tpgt, rtpi=reg.rtpi, lun=reg.lun)


# -- what the engine calls -------------------------------------------------------------------------
def prefetch(dev: "SeDevice", rt: "PrRuntime") -> None:
    """Load the shared state for a command about to run, before the engine takes its tree
    lock: a store that is slow or unreachable holds up this command only, not the commands
    of every other device. Keeps the newest state any command loaded from this store
    (versions grow), so a load that finishes late cannot bring back an older state."""
    store = store_of(dev)
    if store is None:
        return
    version, blob = store.load()
    with rt.store_lock:
        old = rt.loaded
        if old is None or old[0] is not store or version >= old[1]:
            rt.loaded = (store, version, blob)


def refresh(dev: "SeDevice", rt: "PrRuntime") -> None:
    """Make the device's PR state the shared one (a no-op without a store). Under the tree
    lock, from what :func:`prefetch` loaded; every time, so nothing a node changed on its
    own (an APTPL pre-registration, a LUN going away) outlives the next command."""
    store = store_of(dev)
    if store is None:
        return
    with rt.store_lock:
        loaded = rt.loaded
    if loaded is None or loaded[0] is not store:
        # a check without a prefetch (EXTENDED COPY's other device), or a store reopened
        loaded = (store, *store.load())
    decode(dev, rt, loaded[2])


def transaction(dev: "SeDevice", rt: "PrRuntime", run: Callable[[], object]) -> object:
    """Run a PERSISTENT RESERVE OUT on the latest shared state and store what it changed
    (compare-and-swap); when another node stored first, run it again on the new state. The
    command's own outcome (data, RESERVATION CONFLICT, sense) is that of the round that
    committed, or of the round that changed nothing."""
    store = store_of(dev)
    if store is None:
        return run()
    for _ in range(MAX_ROUNDS):
        version, blob = store.load()
        decode(dev, rt, blob)
        before = encode(dev, rt)
        try:
            result, error = run(), None
        except Exception as e:  # noqa: BLE001 - SCSI outcomes; re-raised once stored
            result, error = None, e
        after = encode(dev, rt)
        if after == before or store.store(version, after):
            if after != before:
                with rt.store_lock:
                    rt.loaded = None  # older than what we stored: the next command loads
            if error is not None:
                raise error
            return result
        # lost the race: what this round did is forgotten at the next load
    dev.log.err("simfs: shared PR state kept changing; PR OUT ends BUSY")
    raise StatusError(S.BUSY, why="shared PR state contended")
