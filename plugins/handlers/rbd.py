"""user:rbd — a Ceph RBD image through librbd, as tcmu-runner's rbd handler serves it.

dev_config ``rbd/POOL/IMAGE[;osd_op_timeout=SECONDS][;conf=/path/ceph.conf]``. The cluster
is found through ``conf=``, else librados' defaults ($CEPH_CONF, /etc/ceph/ceph.conf). The
image must exist and have exactly the device's size (``dev_size``). librbd's errors end
commands as tcmu-runner's do: a timed-out operation with BUSY (the initiator retries, or
fails over), a blocklisted client with NOT READY / ALUA STATE TRANSITION, anything else with
MEDIUM ERROR. Needs Debian's python3-rbd (a venv with --system-site-packages sees it).

``;pr=shared`` (a simfs extension, not in tcmu-runner) keeps the device's persistent
reservations in a RADOS object beside the image, ``simfs_pr.<image id>``, so every node
exporting the image with ``pr=shared`` enforces one reservation; ``pr=local`` (the default)
is LIO's per-node state. The object is replaced whole with compare-and-swap on its RADOS
version (see :class:`RadosPrStore` and docs/multinode.md).
"""

from __future__ import annotations

import errno
import os
import threading
from typing import Optional

from simfs_plugins.handlers import Device, Handler, HandlerError, Status

try:  # Debian's python3-rados / python3-rbd
    import rados
    import rbd
except ImportError:  # pragma: no cover - the handler then refuses every open
    rados = rbd = None

CFG_DESC = ("RBD config string is of the form:\n"
            "poolname/devicename[;option1;option2;...]\n"
            "where:\n"
            "poolname:\tExisting RADOS pool\n"
            "devicename:\tName of the RBD image\n"
            "optionN:\tLike: \"osd_op_timeout=30\" in secs\n"
            "                     \"conf=/etc/ceph/cluster.conf\"\n"
            "                     \"pr=shared\" (simfs: PR state shared in RADOS)\n")


class Config:
    """A parsed ``rbd/POOL/IMAGE;opts`` cfgstring."""

    def __init__(self, cfgstring: str):
        rest = cfgstring.partition("/")[2]
        path, *opts = rest.split(";")
        pool, _, image = path.partition("/")
        if not pool:
            raise ValueError("Could not get pool name")
        if not image:
            raise ValueError("Could not get image name")
        self.pool, self.image = pool, image
        self.osd_op_timeout: Optional[str] = None
        self.conf: Optional[str] = None
        self.pr = "local"
        for opt in opts:
            key, eq, value = opt.partition("=")
            if key == "osd_op_timeout" and eq:
                try:
                    if float(value) <= 0:
                        raise ValueError
                except ValueError:
                    raise ValueError(f"Invalid osd_op_timeout {value!r}") from None
                self.osd_op_timeout = value
            elif key == "conf" and eq and value:
                self.conf = value
            elif key == "pr" and eq:
                if value not in ("local", "shared"):
                    raise ValueError(f"Invalid pr {value!r} (local or shared)")
                self.pr = value
            else:
                raise ValueError(f"Unknown option {opt!r}")


def _err(e: BaseException) -> int:
    return -(getattr(e, "errno", None) or errno.EIO)


class RadosPrStore:
    """The device's persistent-reservation state in one RADOS object (``pr=shared``).

    ``load`` reads the object and its RADOS object version; ``store`` writes the whole new
    state in one write operation that first asserts that version (or, for the first state,
    that the object does not exist yet). The OSD applies such an operation atomically or not
    at all, so two nodes' updates are serialized, a loser learns it lost (ERANGE/EOVERFLOW,
    or EEXIST) and runs its command again on the winner's state, and a node that dies
    mid-update leaves either the old state or the new one: no lock to be left held.
    """

    #: the state is small (a few hundred bytes per registration); read at most this much
    MAX = 1 << 20

    def __init__(self, handler: "RbdHandler", dev: Device, ioctx, name: str):
        self._handler, self._dev, self._ioctx, self.name = handler, dev, ioctx, name
        # get_last_version() answers for the last operation of this ioctx: one at a time
        self._lock = threading.Lock()

    def load(self):
        def read():
            with self._lock:
                try:
                    blob = self._ioctx.read(self.name, self.MAX)
                except rados.ObjectNotFound:
                    return 0, None
                return self._ioctx.get_last_version(), blob
        return self._handler._io(self._dev, "read", read)

    def store(self, version, blob: bytes) -> bool:
        def write():
            with self._lock, rados.WriteOpCtx() as op:
                if version == 0:
                    op.new(rados.LIBRADOS_CREATE_EXCLUSIVE)
                else:
                    op.assert_version(version)
                op.write_full(blob)
                try:
                    self._ioctx.operate_write_op(op, self.name)
                except (rados.ObjectExists, rados.ObjectNotFound):
                    return False  # created, or removed, by someone else meanwhile
                except rados.Error as e:
                    if getattr(e, "errno", None) in (errno.ERANGE, errno.EOVERFLOW):
                        return False  # another node stored first
                    raise
                return True
        return self._handler._io(self._dev, "write", write)


class State:
    def __init__(self, cluster, ioctx, image, pr_store: Optional[RadosPrStore] = None,
                 pr_ioctx=None):
        self.cluster, self.ioctx, self.image = cluster, ioctx, image
        self.pr_store, self.pr_ioctx = pr_store, pr_ioctx or _Nothing()

    def close(self) -> None:
        # the image first: shutting down a cluster with an image open hangs
        for step in (self.image.close, self.pr_ioctx.close, self.ioctx.close,
                     self.cluster.shutdown):
            try:
                step()
            except Exception:  # noqa: BLE001 - a cluster that is gone cannot refuse a close
                pass


class RbdHandler(Handler):
    subtype = "rbd"
    name = "Ceph RBD handler"
    cfg_desc = CFG_DESC

    def check_config(self, cfgstring: str) -> Optional[str]:
        if rbd is None:
            return "python3-rbd is not installed"
        try:
            cfg = Config(cfgstring)
        except ValueError as e:
            return str(e)
        if cfg.conf is not None and not os.path.exists(cfg.conf):
            return f"{cfg.conf} does not exist"
        return None

    def open(self, dev: Device) -> None:
        log = dev.log
        cfg = Config(dev.cfgstring)
        cluster = rados.Rados(conffile=cfg.conf or "")
        ioctx = image = None
        try:
            cluster.conf_set("rbd_cache", "false")
            if cfg.osd_op_timeout:
                cluster.conf_set("rados_osd_op_timeout", cfg.osd_op_timeout)
                cluster.conf_set("rados_mon_op_timeout", cfg.osd_op_timeout)
            try:
                cluster.connect(timeout=int(float(cfg.osd_op_timeout or 30)))
            except Exception as e:
                log.err(f"Could not connect to cluster. (Err {_err(e)})")
                raise
            try:
                ioctx = cluster.open_ioctx(cfg.pool)
            except Exception as e:
                log.err(f"Could not create ioctx for pool {cfg.pool}. (Err {_err(e)})")
                raise
            try:
                image = rbd.Image(ioctx, cfg.image)
            except Exception as e:
                log.err(f"Could not open image {cfg.image}. (Err {_err(e)})")
                raise
            size = image.size()
            if size != dev.size:
                log.err(f"Mismatched sizes. RBD image size {size}. Requested new size "
                        f"{dev.size}.")
                raise OSError(errno.EINVAL, "size mismatch")
            if not image.features() & rbd.RBD_FEATURE_EXCLUSIVE_LOCK:
                log.warn("exclusive-lock not enabled for image. HA not supported.")
            dev.max_xfer_len = image.stat()["obj_size"] // dev.block_size
            store = None
            if cfg.pr == "shared":
                # an ioctx of its own: RADOS object versions are read per ioctx
                pr_ioctx = cluster.open_ioctx(cfg.pool)
                store = RadosPrStore(self, dev, pr_ioctx, f"simfs_pr.{image.id()}")
                log.info(f"persistent reservations shared through {cfg.pool}/{store.name}")
        except BaseException:
            State(cluster, ioctx or _Nothing(), image or _Nothing()).close()
            raise
        dev.private = State(cluster, ioctx, image, store, store and store._ioctx)

    def close(self, dev: Device) -> None:
        if isinstance(dev.private, State):
            dev.private.close()
            dev.private = None

    def _io(self, dev: Device, op: str, call):
        try:
            return call()
        except Exception as e:  # noqa: BLE001 - librbd's errors become tcmu-runner's statuses
            code = _err(e)
            if code == -errno.ETIMEDOUT:
                dev.log.err("Timing out cmd.")
                raise HandlerError(Status.TIMEOUT) from None
            if code == -errno.ESHUTDOWN:  # blocklisted: another gateway took the image
                raise HandlerError(Status.TRANSITION) from None
            dev.log.err(f"Got fatal IO error {code}.")
            raise HandlerError(Status.RD_ERR if op == "read" else Status.WR_ERR) from None

    def read(self, dev: Device, offset: int, length: int) -> bytes:
        return self._io(dev, "read", lambda: dev.private.image.read(offset, length))

    def write(self, dev: Device, offset: int, data: bytes) -> None:
        self._io(dev, "write", lambda: dev.private.image.write(data, offset))

    def flush(self, dev: Device) -> None:
        self._io(dev, "flush", dev.private.image.flush)

    def unmap(self, dev: Device, offset: int, length: int) -> None:
        self._io(dev, "unmap", lambda: dev.private.image.discard(offset, length))

    def pr_store(self, dev: Device) -> Optional[RadosPrStore]:
        st = getattr(dev, "private", None)  # None once closed
        return st.pr_store if isinstance(st, State) else None

    def reconfig(self, dev: Device, key: str, value) -> None:
        if key != "dev_size":
            raise OSError(errno.EOPNOTSUPP, key)
        size = self._io(dev, "read", dev.private.image.size)
        if size != value:  # resize the image first (rbd resize), then dev_size
            dev.log.err(f"Mismatched sizes. RBD image size {size}. Requested new size "
                        f"{value}.")
            raise OSError(errno.EINVAL, "size mismatch")


class _Nothing:
    def close(self) -> None:
        pass


HANDLER = RbdHandler()
