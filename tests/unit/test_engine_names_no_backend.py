"""The SCSI engine reaches a backend only through what the backend device declares
(simfs.core.backend.BackendDevice: exec_ops, max_io_bytes, geometry, failure log lines):
no backend's name, constant or log wording appears in simfs/scsi."""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

SCSI = Path(__file__).resolve().parents[2] / "simfs" / "scsi"

#: names and words that belong to one backend (its module, constants, log lines)
BACKEND_WORDS = ["fileio", "iblock", "rd_mcp", "rd_dr", "pscsi", "tcmu", "FILEIO", "IBLOCK",
                 "FD_MAX_BYTES", "fd_do_rw", "fd_execute", "iblock_", "rd_execute",
                 "vfs_fsync_range", "vfs_iter_write", "fallocate"]


@pytest.mark.parametrize("path", sorted(SCSI.glob("*.py")), ids=lambda p: p.name)
def test_engine_module_names_no_backend(path):
    text = path.read_text()
    found = [w for w in BACKEND_WORDS if re.search(re.escape(w), text, re.IGNORECASE
                                                   if w.islower() else 0)]
    assert not found, f"{path.name} names backend-specific {found}"


def test_the_words_are_found_where_they_belong():
    """The check can fail: the backends themselves use these words."""
    plugins = SCSI.parents[1] / "plugins" / "backends"
    text = (plugins / "fileio.py").read_text() + (plugins / "iblock.py").read_text()
    assert "fd_do_rw" in text and "FD_MAX_BYTES" in text and "IBLOCK" in text


#: fabric names (configfs directory and fabric_name spellings)
FABRIC_NAMES = {"loopback", "tcm_loop", "iSCSI", "iscsi", "vhost", "qla2xxx", "tcm_fc", "fc",
                "srpt", "usb_gadget", "xen-pvscsi", "ibmvscsis", "efct", "remote"}


def _fabric_literals(text: str) -> list[tuple[int, str]]:
    return [(n.lineno, n.value) for n in ast.walk(ast.parse(text))
            if isinstance(n, ast.Constant) and n.value in FABRIC_NAMES]


@pytest.mark.parametrize("path", sorted(SCSI.glob("*.py")), ids=lambda p: p.name)
def test_engine_module_compares_no_fabric_name(path):
    """What a fabric can do (T10-PI pass-through ...) is its FabricOps' to say, on the port:
    the engine never tests a fabric's name."""
    assert _fabric_literals(path.read_text()) == []


def test_a_fabric_name_literal_is_found():
    assert _fabric_literals('if port.fabric == "loopback":\n    pass\n') == [(1, "loopback")]
