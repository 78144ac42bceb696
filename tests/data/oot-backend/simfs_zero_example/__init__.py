"""``zero``: an out-of-tree backend, the smallest a plugin can be.

``zero_size=BYTES`` in ``control``; the device reads zeros and drops writes. Installed
with pip, it appears under ``target/core`` as ``zero_N`` with no change to simfs.
"""
import errno

from simfs.configfs import ConfigfsError
from simfs.core.backend import Backend, BackendDevice


class ZeroDevice(BackendDevice):
    size = 0

    def set_configfs_dev_params(self, buf: bytes) -> None:
        for token in buf.decode().strip().split(","):
            key, _, value = token.partition("=")
            if key == "zero_size" and value.isdigit():
                self.size = int(value)
                self.log.debug(f"ZERO: Referencing Size: {self.size}")

    def configure_device(self) -> None:
        if not self.size:
            raise ConfigfsError(errno.EINVAL, "Missing zero_size= parameter")
        a = self.dev.attrib
        a.hw_block_size = 512
        a.hw_max_sectors = 1024
        a.hw_queue_depth = 32

    def show_configfs_dev_params(self) -> str:
        return f"ZERO size: {self.size}\n"

    def get_blocks(self) -> int:
        return self.size // self.dev.attrib.block_size - 1

    def read(self, offset: int, length: int) -> bytes:
        return bytes(length)

    def write(self, offset: int, data, fua: bool = False) -> None:
        pass


class ZeroBackend(Backend):
    name = "zero"
    inquiry_prod = "ZERO"

    def alloc_device(self, dev) -> ZeroDevice:
        return ZeroDevice(dev)


BACKEND = ZeroBackend()
