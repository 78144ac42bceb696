"""The version table (simfs.core.kernels): consistent, complete, and docs/kernels.md current."""

from pathlib import Path

import pytest

from simfs.core import kernels
from simfs.core.dev_attrib import PASSTHROUGH_PR_ATTRIB_ATTRS, SBC_ATTRIB_ATTRS
from simfs.core.fabric import WWN_PARAM_ATTRS
from simfs.core.tpg import ENABLE_ATTR, RTPI_ATTR
from simfs.core.wwn import WWN_ATTRS
from simfs_plugins.fabrics import ibmvscsis, iscsi, qla2xxx, qla2xxx_npiv, srpt, usb_gadget

DOCS = Path(__file__).resolve().parents[2] / "docs" / "kernels.md"


def test_docs_kernels_md_is_generated_from_the_table():
    assert DOCS.read_text() == kernels.render_markdown(), (
        "docs/kernels.md is stale: python -m simfs.core.kernels > docs/kernels.md")


def test_names_aliases_and_unknown():
    assert kernels.names() == ("4.18", "5.14", "6.1", "6.12", "6.18", "v3.0")
    assert kernels.get("modern") is kernels.get(kernels.NEWEST)
    assert kernels.get("v5.0").name == "6.18"
    assert kernels.get("v3.0").legacy and not kernels.get("6.1").legacy
    with pytest.raises(ValueError, match="unknown kernel '5.15'"):
        kernels.get("5.15")


def test_every_change_names_a_known_key_and_an_ordered_release():
    for c in kernels.CHANGES:
        assert c.key in kernels.BASELINE, c
        assert kernels.release(c.since) > kernels.release("4.18"), c
        assert c.what and c.why and c.where, c
    for files in kernels.FILES.values():
        for f in files:
            if f.since and f.until:
                assert kernels.release(f.since) < kernels.release(f.until), f


@pytest.mark.parametrize("name", kernels.VERSIONS)
def test_every_listed_file_has_an_implementation(name):
    k = kernels.get(name)
    impls = {
        "dev_attrib": SBC_ATTRIB_ATTRS, "dev_attrib_passthrough": SBC_ATTRIB_ATTRS,
        "dev_attrib_passthrough_pr": PASSTHROUGH_PR_ATTRIB_ATTRS, "dev_wwn": WWN_ATTRS,
        "wwn_param": WWN_PARAM_ATTRS, "tpg_base": (ENABLE_ATTR, RTPI_ATTR),
        "iscsi_wwn": iscsi.WWN_ATTRS, "iscsi_tpg_base": iscsi.TPG_BASE_ATTRS,
        "iscsi_tpg_attrib": iscsi.TPG_ATTRIB_ATTRS, "iscsi_acl_attrib": iscsi.ACL_ATTRIB_ATTRS,
        "qla2xxx_tpg_base": qla2xxx.FABRIC.tpg_base_attrs,
        "qla2xxx_npiv_tpg_base": qla2xxx_npiv.FABRIC.tpg_base_attrs,
        "srpt_tpg_base": srpt.FABRIC.tpg_base_attrs,
        "usb_gadget_tpg_base": usb_gadget.FABRIC.tpg_base_attrs,
        "ibmvscsis_tpg_base": ibmvscsis.FABRIC.tpg_base_attrs,
    }
    assert set(impls) == set(kernels.FILES)
    for group, attrs in impls.items():
        table = k.table(group, attrs)  # KeyError: a file without an implementation
        assert [a.name for a in table] == list(k.files(group))


def test_values_per_version():
    v = {n: kernels.get(n) for n in kernels.VERSIONS}
    assert [v[n].has("tpg_rtpi") for n in kernels.VERSIONS] == [False, False, False, True, True]
    assert [v[n].value("dbroot_busy") for n in kernels.VERSIONS] == \
        ["fabrics", "fabrics", "devices", "devices", "devices"]
    assert [v[n].value("tpg_enable") for n in kernels.VERSIONS] == \
        ["fabric", "fabric", "generic", "generic", "generic"]
    assert [v[n].has("pr_non_holder_read_capacity") for n in kernels.VERSIONS] == \
        [False, False, False, True, True]
    # a stable backport: 6.1.y and 6.12.y have the 6.18 change
    assert [v[n].has("lu_gp_members_nul") for n in kernels.VERSIONS] == \
        [True, True, False, False, False]
    assert "netif_timeout" in v["6.1"].files("iscsi_tpg_attrib")
    assert "netif_timeout" not in v["6.12"].files("iscsi_tpg_attrib")
    assert v["4.18"].files("wwn_param") == ()
    with pytest.raises(KeyError):
        v["6.18"].value("no_such_row")


def test_profile_names_still_work():
    from simfs.core.profile import MODERN, V3_0, get_profile
    assert MODERN.name == kernels.NEWEST and MODERN.family == "modern"
    assert V3_0.family == "v3.0" and V3_0.engine_version == "v3.0.0"
    assert get_profile("6.1").core_version == "v5.0"
    assert len(V3_0.kptr(object())) == 8 and len(MODERN.kptr(object())) == 16


def test_engine_and_fabric_rows_per_version():
    v = {n: kernels.get(n) for n in kernels.names()}
    row = {key: [v[n].value(key) for n in kernels.VERSIONS] for key in kernels.BASELINE}
    assert row["xcopy_lookup"] == ["devices", "acl", "acl", "acl", "acl"]
    assert row["xcopy_failure_sense"][1:3] == ["LOGICAL UNIT COMMUNICATION FAILURE", "specific"]
    # XCOPY_MAX_SECTORS 1024, 4096 (5.7); XCOPY_MAX_BYTES (6.2, in Debian's 6.1.y too)
    assert [c[1] for c in row["xcopy_chunk"]] == [1024, 4096, 16 << 20, 16 << 20, 16 << 20]
    assert row["rcr_3pc_check"] == row["report_supported_opcodes"] == \
        [False, False, False, True, True]
    assert row["residuals"] == ["reject", "signal", "signal", "signal", "signal"]
    assert row["fabric_efct"] == [False, True, True, True, True]
    assert row["fabric_remote"] == [False, False, False, True, True]
    assert row["qla2xxx_enable_pins_tpg"] == [True, False, False, False, False]
    assert row["vhost_version_space"] == [False, False, False, False, True]
    assert not v["v3.0"].has("xcopy") and all(v[n].has("xcopy") for n in kernels.VERSIONS)
    assert v["4.18"].files("qla2xxx_tpg_base") == ("enable", "dynamic_sessions",
                                                  "fabric_prot_type")
    assert v["6.1"].files("usb_gadget_tpg_base") == ("nexus",)


@pytest.mark.parametrize("version", kernels.VERSIONS)
def test_virtual_lun0_is_not_connected_on_every_version(tmp_path, version):
    """The virtual LUN 0 answers peripheral type 0x3f on every version: from 5.13 through
    rd_dummy=1 in its control string (logged), before through spc_emulate_inquiry's own
    case for it (no rd_dummy key to pass, nothing logged)."""
    from simfs.core.profile import get_profile
    from simfs.testing import Sim
    sim = Sim(state_dir=tmp_path / "st", profile=get_profile(version))
    try:
        assert sim.core.lun0_dev.bdev.get_device_type() == 0x3F
        assert ("RAMDISK: Setting DUMMY flag: 1" in sim.log.text()) == \
            kernels.get(version).has("rd_dummy")
    finally:
        sim.close()
