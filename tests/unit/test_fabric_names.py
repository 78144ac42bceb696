"""The fabrics' name parsers, in process: FC WWPNs (ft_parse_wwn / tcm_qla2xxx_parse_wwn's
byte counting), efct's sscanf, srpt's initiator port IDs, usb_gadget's naa check, and
--wwn port specs."""
from __future__ import annotations

import pytest

from simfs.core.fabric import parse_hardware_ports
from simfs_plugins.fabrics import efct, srpt, usb_gadget
from simfs_plugins.fabrics.fabric_lib import WwnSyntax, format_fc_wwn, parse_fc_wwn


@pytest.mark.parametrize("name, value", [
    ("21:00:00:24:ff:31:4c:48", 0x21000024ff314c48),
    ("00:00:00:00:00:00:00:01", 1),
    ("21:00:00:24:ff:31:4c:489", 0x1000024ff314c489),  # a ninth digit slips in: low 64 bits
])
def test_strict_fc_wwn_accepted(name, value):
    assert parse_fc_wwn(name, strict=True) == (value, len(name))


@pytest.mark.parametrize("name, debug", [
    ("21:00:00:24:FF:31:4c:48", "err 3 len 12 pos 1 byte 4"),   # upper case
    ("21000024ff314c48", "err 1 len 2 pos 0 byte 1"),           # no separators
    ("21:00:00:24:ff:31:4c", "err 1 len 20 pos 0 byte 7"),      # seven bytes
    ("21:00:00:24:ff:31:4c:4", "err 2 len 22 pos 2 byte 7"),    # half a byte
    ("2:100:00:24:ff:31:4c:48", "err 3 len 1 pos 2 byte 0"),  # ":" where a digit goes
    ("21:00:00:24:ff:31:4c:48aaaaaaaaa", "err 4 len 31 pos 10 byte 8"),  # FT_NAMELEN - 1
])
def test_strict_fc_wwn_refused(name, debug):
    with pytest.raises(WwnSyntax) as e:
        parse_fc_wwn(name, strict=True)
    assert e.value.debug == debug


def test_loose_fc_wwn_and_format():
    assert parse_fc_wwn("20000000C9112233\n", strict=False) == (0x20000000C9112233, 17)
    assert parse_fc_wwn("\n", strict=False) == (0, 1)
    with pytest.raises(WwnSyntax):
        parse_fc_wwn("20:00", strict=False)
    assert format_fc_wwn(0x20000000C9112233) == "20:00:00:00:c9:11:22:33"


@pytest.mark.parametrize("name, ok", [
    ("10:00:00:10:9b:1a:2b:3c", True), ("10:00:00:10:9B:1A:2B:3C", True),
    ("1:0:0:1:9:1:2:3", True), (" 10: 00:00:10:9b:1a:2b:3c", True),
    ("10:00:00:10:9b:1a:2b:3cjunk", True),  # sscanf stops after the eighth field
    ("100000109b1a2b3c", False), ("10-00-00-10-9b-1a-2b-3c", False), ("10:00:00:10:9b:1a:2b", False),
    ("naa.10:00:00:10:9b:1a:2b:3c", False)])
def test_efct_wwn(name, ok):
    if ok:
        efct.parse_wwn(name)
    else:
        with pytest.raises(OSError):
            efct.parse_wwn(name)


@pytest.mark.parametrize("name, ok", [
    ("5054:00ff:fe4a:0b7b", True), ("0x5054:1:2:3", True), ("1:2:3:4:5", True),
    ("0x0000000000000000505400fffe4a0b7b", True), ("0000000000000000505400fffe4a0b7b", True),
    ("0x", True),  # zero bytes of port ID: hex2bin of nothing succeeds
    ("ab" * 16 + "zz", True),  # only the first 16 bytes are decoded
    ("192.168.122.76", True), ("fe80::1%2", True), ("::1", True),
    ("0xabc", False), ("zz", False), ("1.2.3", False), ("256.1.1.1", False),
    ("fe80::1%eth0", False), ("1:2:3", False)])
def test_srpt_initiator_port_ids(name, ok):
    assert srpt.valid_initiator_port_id(name) is ok


def test_srpt_port_names():
    gid = "fe800000000000000002c90300031235"
    assert srpt.guid_name(gid) == "0002:c903:0003:1235"
    assert srpt.gid_name(gid) == "0x" + gid


@pytest.mark.parametrize("name, port", [("naa.5001405", "5001405"), ("x-naa.1", "1"),
                                        ("naa.", None), ("naa." + "1" * 32, None),
                                        ("naa." + "1" * 31, "1" * 31), ("fc.1", None)])
def test_usb_gadget_names(name, port):
    assert usb_gadget.check_wwn(name) == port


def test_hardware_port_specs():
    assert parse_hardware_ports([
        "qla2xxx=21:00:00:24:FF:31:4c:48", "qla2xxx=naa.21000024ff314c48",
        "tcm_fc=0x2000001122334455", "srpt=ib.FE800000000000000002c90300031235",
        "ibmvscsis=30000003"]) == {
        "qla2xxx": ["21000024ff314c48"], "fc": ["2000001122334455"],
        "srpt": ["fe800000000000000002c90300031235"], "ibmvscsis": ["30000003"]}
    for bad in ("qla2xxx", "qla2xxx=", "iscsi=iqn.x", "srpt=fe80::1", "ibmvscsis=x/y"):
        with pytest.raises(ValueError):
            parse_hardware_ports([bad])
