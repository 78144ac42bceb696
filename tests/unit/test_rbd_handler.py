"""The user:rbd handler's parts that need no cluster: its cfgstring (with simfs's ``pr=``
option) and how librbd's errors end commands (tcmu-runner's rbd.c: ETIMEDOUT -> BUSY,
ESHUTDOWN -> NOT READY / STATE TRANSITION, any other error -> "Got fatal IO error N." and
MEDIUM ERROR). The cluster paths are in tests/e2e/test_rbd.py and test_multinode.py."""
from __future__ import annotations

import errno

import pytest

from simfs_plugins.handlers import HandlerError, Status
from simfs_plugins.handlers.rbd import Config, RbdHandler


def test_pr_option():
    assert Config("rbd/p/i").pr == "local"
    assert Config("rbd/p/i;pr=shared").pr == "shared"
    assert Config("rbd/p/i;osd_op_timeout=5;pr=local").pr == "local"
    with pytest.raises(ValueError, match="Invalid pr 'all' \\(local or shared\\)"):
        Config("rbd/p/i;pr=all")


class Dev:
    """Just what _io touches: the log."""

    def __init__(self):
        self.lines = []
        outer = self

        class Log:
            def err(self, m):
                outer.lines.append(m)
        self.log = Log()


@pytest.mark.parametrize("code,op,status,line", [
    (errno.ENOSPC, "write", Status.WR_ERR, "Got fatal IO error -28."),
    (errno.EDQUOT, "write", Status.WR_ERR, "Got fatal IO error -122."),
    (errno.EIO, "read", Status.RD_ERR, "Got fatal IO error -5."),
    (errno.ETIMEDOUT, "write", Status.TIMEOUT, "Timing out cmd."),
    (errno.ESHUTDOWN, "write", Status.TRANSITION, None),
])
def test_librbd_errors_become_runner_statuses(code, op, status, line):
    dev = Dev()

    def fail():
        raise OSError(code, "librbd")
    with pytest.raises(HandlerError) as e:
        RbdHandler()._io(dev, op, fail)
    assert e.value.status == status
    assert dev.lines == ([line] if line else [])
