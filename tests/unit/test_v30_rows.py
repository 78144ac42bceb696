"""The v3.0 rows of the kernel table: each overrides a key every modern version has."""
from __future__ import annotations

from simfs.core import kernels


def test_every_legacy_row_names_a_baseline_key():
    for row in kernels.LEGACY_ROWS:
        assert row.key in kernels.BASELINE, row.key
        assert row.what, row.key


def test_v30_reads_its_rows_and_modern_versions_do_not():
    v3 = kernels.get("v3.0")
    assert v3.value("virtual_queue_depth") == (32, 128)
    assert v3.value("backend_info_vendor") == "LIO"
    assert v3.has("control_needs_known_key")
    for name in kernels.VERSIONS:
        k = kernels.get(name)
        assert k.value("virtual_queue_depth") is None
        assert k.value("backend_info_vendor") == "TCM"
        assert not k.has("control_needs_known_key")
        assert k.value("dev_info_status") != v3.value("dev_info_status")


def test_v30_file_lists():
    v3 = kernels.get("v3.0")
    assert v3.files("dev") == ("info", "control", "fd", "enable", "alua_lu_gp")
    assert v3.files("dev_attrib")[-1] == "task_timeout"
    assert v3.files("iscsi_tpg_attrib") == ()  # no fabric in the 2009 tree
    assert "task_timeout" not in kernels.get("6.18").files("dev_attrib")
