"""Which network portals collide on one port (iscsit_setup_np's bind with SO_REUSEADDR: two
listening sockets conflict when one address covers the other), and the probe socket made
where the iSCSI server would listen."""
from __future__ import annotations

import errno
import socket
from types import SimpleNamespace

import pytest

from simfs.configfs import ConfigfsError
from simfs_plugins.fabrics.iscsi.portals import IscsiNp, _overlaps, parse_portal, setup_np


def np_(name: str) -> IscsiNp:
    ip, port, family = parse_portal(name)
    return IscsiNp(None, name, ip, port, family)  # type: ignore[arg-type]


@pytest.mark.parametrize("a, b, clash", [
    ("0.0.0.0:3260", "127.0.0.1:3260", True),
    ("127.0.0.1:3260", "127.0.0.2:3260", False),
    ("0.0.0.0:3260", "127.0.0.1:3261", False),
    ("[::]:3260", "127.0.0.1:3260", True),      # an IPv6 wildcard takes IPv4 too
    ("[::]:3260", "0.0.0.0:3260", True),
    ("[::1]:3260", "0.0.0.0:3260", False),
    ("[::1]:3260", "[::]:3260", True),
    ("[::ffff:127.0.0.1]:3260", "127.0.0.1:3260", True),
])
def test_overlapping_portals(a, b, clash):
    assert _overlaps(np_(a), np_(b)) is clash
    assert _overlaps(np_(b), np_(a)) is clash


def test_probe_reports_the_bind_errno():
    """A port another socket listens on: "kernel_bind() failed: -98", EINVAL."""
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen(1)
        port = other.getsockname()[1]
        core = SimpleNamespace(events=SimpleNamespace(iscsi_listen_hosts=lambda ip: [ip]),
                               fabric_modules={})
        with pytest.raises(ConfigfsError) as e:
            setup_np(core, np_(f"127.0.0.1:{port}"))  # type: ignore[arg-type]
        assert e.value.errno == errno.EINVAL
        assert e.value.reason == f"kernel_bind() failed: -{errno.EADDRINUSE}"
    # free again: the probe binds, listens and lets go
    setup_np(core, np_(f"127.0.0.1:{port}"))  # type: ignore[arg-type]
    # without an iSCSI server nothing is bound
    quiet = SimpleNamespace(events=SimpleNamespace(iscsi_listen_hosts=lambda ip: []), fabric_modules={})
    setup_np(quiet, np_("127.0.0.1:1"))  # type: ignore[arg-type]
