"""docs/handlers.md's example handler (kept identical to the doc by tests)."""
from simfs_plugins.handlers import Handler


class RamHandler(Handler):
    subtype = "ram"
    cfg_desc = "ram/<any name>: blocks in memory, lost on rmdir"

    def open(self, dev):
        dev.private = bytearray(dev.size)

    def read(self, dev, offset, length):
        return bytes(dev.private[offset:offset + length])

    def write(self, dev, offset, data):
        dev.private[offset:offset + len(data)] = data


HANDLER = RamHandler()
