"""configfs fuzzing on every named kernel version, not only the newest.

test_fuzz_configfs.py fuzzes the default version at length. Here each other version builds
the objects it has (v3.0: the seed's backends and ALUA groups; 4.18 on: every fabric
module that version provides) and every writable attribute takes hostile writes. After
each refused write the whole tree must be unchanged and the error an errno; an accepted
write must leave every attribute readable.

Each attribute takes one payload per version, picked in rotation so that across the
attributes of one version every payload class is used: the snapshot after each write
costs what the whole tree costs, and the default version's sweep already does six each.
"""
from __future__ import annotations

import errno
import zlib

import pytest

from simfs.configfs import ConfigfsError
from simfs.core.kernels import LEGACY, NEWEST, VERSIONS

from test_fuzz_configfs import attributes, build, snapshot

OLDER = [v for v in VERSIONS if v != NEWEST] + [LEGACY]
PAYLOADS = [b"\xff\xfe\x00garbage", b"18446744073709551616", b"-1", b" 0x", b"4294967296\n",
            b"1" * 5000, b"0\n", b"1\n", b"2", b"\n"]


@pytest.fixture(scope="module", params=OLDER)
def version_env(request, tmp_path_factory):
    sim = build(tmp_path_factory.mktemp(f"fuzz-{request.param}"), request.param)
    refs = attributes(sim.tree.root, [])
    writable = sorted({r.path() for r in refs if r.attr.store is not None})
    yield request.param, sim, writable
    sim.close()


def test_every_writable_attribute(version_env, monkeypatch):
    version, sim, writable = version_env
    import simfs.core.alua as core_alua
    import simfs.scsi.alua as scsi_alua
    monkeypatch.setattr(core_alua.time, "sleep", lambda s: None)
    monkeypatch.setattr(scsi_alua, "sleep", lambda s: None)
    refused = accepted = 0
    before = snapshot(sim)
    for i, path in enumerate(writable):
        data = PAYLOADS[(i + zlib.crc32(path.encode())) % len(PAYLOADS)]
        try:
            sim.tree.write_attr(path, data)
        except ConfigfsError as e:
            assert isinstance(e, OSError) and e.errno in errno.errorcode, (version, path, e)
            refused += 1
            after = snapshot(sim)
            changed = [k for k in set(before) | set(after) if before.get(k) != after.get(k)]
            # alias/udev_path: the kernel copies the value before refusing an empty one
            if path.rsplit("/", 1)[-1] in ("alias", "udev_path") and changed == [path]:
                changed = []
            assert not changed, (version, path, data[:40], e.errno, changed[:3])
        else:
            accepted += 1
            after = snapshot(sim)
        before = after
    assert refused > len(writable) // 4 and accepted > 5, (version, refused, accepted)


def test_empty_write_is_efault(version_env):
    version, sim, writable = version_env
    before = snapshot(sim)
    for path in writable:
        with pytest.raises(ConfigfsError) as ei:
            sim.tree.write_attr(path, b"")
        assert ei.value.errno == errno.EFAULT, (version, path)
    assert snapshot(sim) == before
