"""rd_mcp: a RAM disk (target_core_rd.c), its memory taken lazily.

``rd_pages=`` pages of 4 KiB are mapped unreserved: a 1 TiB ramdisk costs nothing
until written, and reads of untouched blocks return zeros without allocating.
"""

from __future__ import annotations

import errno

from simfs.configfs import ConfigfsError
from simfs.core.backend import Backend, BackendDevice
from simfs.core.kparse import U32_MAX, Token, cstr, kstrtou32, match_int, tokenize
from simfs.core.storage import RamStorage

PAGE_SIZE = 4096
RD_HBA_VERSION = "v4.0"
RD_MAX_DEVICE_QUEUE_DEPTH = 128
RD_BLOCKSIZE = 512
# 65536 bytes of scatterlist entries per table: 32-byte entries on x86_64, 20 on the
# seed's i686.
SG_PER_TABLE = {"modern": 65536 // 32, "v3.0": 65536 // 20}

PI_TUPLE_SIZE = 8  # struct t10_pi_tuple

TOKENS = [Token("rd_pages", "rd_pages=%d"), Token("rd_nullio", "rd_nullio=%d"),
          Token("rd_dummy", "rd_dummy=%d")]


class RdHost:
    def __init__(self, host_id: int):
        self.host_id = host_id
        self.dev_id_count = 0


class RdDevice(BackendDevice):
    def __init__(self, dev, backend: "RdMcpBackend"):
        super().__init__(dev)
        self.backend = backend
        self.page_count = 0
        self.has_page_count = False
        self.nullio = False
        self.prot: RamStorage | None = None
        self.dummy = False
        self.sg_table_count = 0
        self.dev_id = 0
        self.storage: RamStorage | None = None

    @property
    def host(self) -> RdHost:
        return self.dev.hba.private

    def set_configfs_dev_params(self, buf: bytes) -> None:
        kernel = self.dev.core.kernel
        if kernel.value("control_parser") == "2009":
            self._set_params_2009(buf)
            return
        for key, arg, _ in tokenize(buf, TOKENS):
            if key is None or (key == "rd_dummy" and not kernel.has("rd_dummy")):
                continue  # a key this kernel's table has not: skipped, as any unknown one
            try:
                value = match_int(arg)
            except ConfigfsError:
                continue  # the kernel ignores match_int's result here
            if key == "rd_pages":
                self.page_count = value & U32_MAX
                self.has_page_count = True
                self.log.debug(f"RAMDISK: Referencing Page Count: {self.page_count}")
            elif key == "rd_nullio" and value == 1:
                self.nullio = True
                self.log.debug(f"RAMDISK: Setting NULLIO flag: {value}")
            elif key == "rd_dummy" and value == 1:
                self.dummy = True
                self.log.debug(f"RAMDISK: Setting DUMMY flag: {value}")

    def _set_params_2009(self, buf: bytes) -> None:
        """v3.0's parser: ``key=value`` pieces split on ',', a key *containing* rd_pages,
        stopping at the first piece it cannot use; EINVAL unless one was taken."""
        params = 0
        rest: str | None = cstr(buf)
        while rest is not None and "=" in rest:
            key, _, rest = rest.partition("=")
            if "rd_pages" not in key:
                break
            value, sep, tail = rest.partition(",")
            rest = tail if sep else None
            try:
                pages = kstrtou32(value, 0)
            except ConfigfsError:
                self.log.err("tcm_strict_strtoul() failed for rd_pages=")
                break
            self.page_count = pages
            self.has_page_count = True
            self.log.info(f"RAMDISK: Referencing Page Count: {self.page_count}")
            params += 1
        if not params:
            raise ConfigfsError(errno.EINVAL, None)  # "return (params) ? count : -EINVAL"

    def configure_device(self) -> None:
        if not self.has_page_count:
            raise ConfigfsError(errno.EINVAL, "Missing rd_pages= parameter")
        if self.page_count == 0:
            raise ConfigfsError(errno.EINVAL,
                                f"Illegal page count: {self.page_count} for Ramdisk device")
        host, log = self.host, self.log
        legacy = self.dev.legacy
        if not self.nullio:
            self.sg_table_count = self.page_count // SG_PER_TABLE[
                "v3.0" if legacy else "modern"] + 1
            try:
                self.storage = RamStorage(self.page_count * PAGE_SIZE)
            except OSError:
                raise ConfigfsError(errno.ENOMEM, "Unable to allocate scatterlist pages for "
                                    "struct rd_dev_sg_table") from None
            # rd_dev_id is not assigned yet when this is printed: it always says 0.
            log.debug(f"CORE_RD[{host.host_id}] - Built Ramdisk Device ID: 0 space of "
                      f"{self.page_count} pages in {self.sg_table_count} tables")
        a = self.dev.attrib
        a.hw_block_size = RD_BLOCKSIZE
        a.hw_max_sectors = 1024 if legacy else U32_MAX
        depth = self.dev.core.kernel.value("virtual_queue_depth")
        a.hw_queue_depth = depth[0] if depth else RD_MAX_DEVICE_QUEUE_DEPTH
        a.max_sectors = 1024
        if not legacy:
            a.is_nonrot = 1
        self.dev_id = host.dev_id_count
        host.dev_id_count += 1
        if not legacy:
            log.debug(f"CORE_RD[{host.host_id}] - Added TCM MEMCPY Ramdisk Device ID: "
                      f"{self.dev_id} of {self.page_count} pages in {self.sg_table_count} "
                      f"tables, {self.page_count * PAGE_SIZE} total bytes")

    def legacy_activation(self) -> tuple[str, str | None]:
        host, vendor = self.host, self.dev.core.kernel.value("backend_info_vendor")
        return (f"CORE_RD[{host.host_id}] - Activating Device with TCQ: 0 at Ramdisk Device "
                f"ID: {self.dev_id}",
                f"CORE_RD[{host.host_id}] - Added {vendor} {self.backend.copy_mode} Ramdisk "
                f"Device ID: {self.dev_id} of {self.page_count} pages in {self.sg_table_count} "
                f"tables, {self.page_count * PAGE_SIZE} total bytes")

    def destroy_device(self) -> None:
        if self.storage is not None:
            self.log.debug(f"CORE_RD[{self.host.host_id}] - Released device space for Ramdisk "
                           f"Device ID: {self.dev_id}, pages {self.page_count} in "
                           f"{self.sg_table_count} tables total bytes "
                           f"{self.page_count * PAGE_SIZE}")
            self.storage.close()
            self.storage = None
        self.free_prot()

    # T10-PI: 8 bytes of protection information per block, in RAM like the data
    def init_prot(self) -> None:
        if self.nullio or self.prot is not None:
            return
        self.prot = RamStorage((self.get_blocks() + 1) * PI_TUPLE_SIZE)

    def free_prot(self) -> None:
        prot, self.prot = getattr(self, "prot", None), None
        if prot is not None:
            prot.close()

    def show_configfs_dev_params(self) -> str:
        kernel = self.dev.core.kernel
        text = (f"{kernel.value('backend_info_vendor')} RamDisk ID: {self.dev_id}  RamDisk "
                f"Makeup: {self.backend.makeup}\n"
                f"        PAGES/PAGE_SIZE: {self.page_count}*{PAGE_SIZE}  SG_table_count: "
                f"{self.sg_table_count}")
        flags = kernel.value("rd_info_flags")
        if "nullio" in flags:
            text += f"  nullio: {int(self.nullio)}"
        if "dummy" in flags and kernel.has("rd_dummy"):
            text += f" dummy: {int(self.dummy)}"
        return text + "\n"

    def get_blocks(self) -> int:
        return self.page_count * PAGE_SIZE // self.dev.attrib.block_size - 1

    def get_device_type(self) -> int:
        return 0x3F if self.dummy else 0x00

    # data path: nullio completes without moving data
    def read(self, offset: int, length: int) -> bytes:
        if self.storage is None:
            return bytes(length)
        return self.storage.read(offset, length)

    def readinto(self, offset: int, view: memoryview) -> None:
        if self.storage is None:
            view[:] = bytes(len(view))
        else:
            self.storage.readinto(offset, view)

    def write(self, offset: int, data, fua: bool = False) -> None:
        if self.storage is not None:
            self.storage.write(offset, data)

    def unmap(self, offset: int, length: int) -> None:
        if self.storage is not None:
            self.storage.unmap(offset, length)

    def describe_storage(self) -> str:
        return "nullio" if self.nullio else f"RAM, {self.page_count * PAGE_SIZE} bytes"


class RdMcpBackend(Backend):
    name = "rd_mcp"
    inquiry_prod = "RAMDISK-MCP"
    inquiry_rev = "4.0"
    v3_hba_type = 6
    v3_banner = "Ramdisk"
    #: what ``info`` calls the kind of ramdisk, and the "Added ..." log line's copy mode
    makeup = "rd_mcp"
    copy_mode = "MEMCPY"

    def attach_hba(self, hba) -> None:
        hba.private = RdHost(hba.host_id)
        core = hba.core
        if core.profile.legacy:
            hba.log.info(f"CORE_HBA[{hba.hba_id}] - Linux-iSCSI.org Ramdisk HBA Driver "
                         f"v3.0 on Generic Target Core Stack {core.profile.core_version}")
            hba.log.info(f"CORE_HBA[{hba.hba_id}] - Attached Ramdisk HBA: {hba.host_id} to "
                         "Generic Target Core TCQ Depth: 256 MaxSectors: 1024")
            return
        hba.log.debug(f"CORE_HBA[{hba.hba_id}] - TCM Ramdisk HBA Driver {RD_HBA_VERSION} on "
                      f"Generic Target Core Stack {core.profile.core_version}")

    def detach_hba(self, hba) -> None:
        hba.log.debug(f"CORE_HBA[{hba.hba_id}] - Detached Ramdisk HBA: {hba.host_id} from "
                      "Generic Target Core")

    def alloc_device(self, dev) -> RdDevice:
        return RdDevice(dev, self)


BACKEND = RdMcpBackend()
