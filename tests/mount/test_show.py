"""`simfs show`: the topology and the PR/ALUA state machines of a mounted tree, computed in
the daemon; as text, and as SVG rendered to PNG to check it draws what it says."""
from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
from pathlib import Path

import pytest
from helpers import sh
from tracing import SIMFS

from simfs.daemon import show

SESSION = Path(__file__).parent.parent / "data" / "record-session.sh"
A, B = "iqn.1994-05.com.example:a", "iqn.1994-05.com.example:b"


def _simfs(*args: str) -> str:
    r = subprocess.run([*SIMFS, *args], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return r.stdout


def _png(svg: Path) -> bytes:
    """Render with rsvg-convert (librsvg2-bin) or cairosvg; the PNG's bytes."""
    png = svg.with_suffix(".png")
    if shutil.which("rsvg-convert"):
        subprocess.run(["rsvg-convert", str(svg), "-o", str(png)], check=True, timeout=60)
    else:
        cairosvg = pytest.importorskip("cairosvg")
        cairosvg.svg2png(url=str(svg), write_to=str(png))
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert width > 200 and height > 100 and len(data) > 5000
    return data


def _svg_text(svg: Path) -> str:
    """The SVG's visible text, entities decoded, joined."""
    import html
    return " ".join(html.unescape(t) for t in re.findall(r"<text[^>]*>([^<]*)</text>",
                                                         svg.read_text()))


@pytest.fixture(scope="module")
def setup(mnt_mod, tmp_path_factory):
    m = mnt_mod
    tmp = tmp_path_factory.mktemp("show")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    r = sh(f"bash {SESSION} {m.root} {tmp}/disk0.img {port}")
    assert r.returncode == 0, r.stderr
    dev = "fileio_0/disk0"
    m.ok(f"simfs scsi {m.root} {dev} -I {A} persist --register --sa-key 0xa")
    m.ok(f"simfs scsi {m.root} {dev} -I {B} persist --register --sa-key 0xb")
    m.ok(f"simfs scsi {m.root} {dev} -I {A} persist --reserve --key 0xa --type 1")
    return m, tmp, port


def test_text_topology(setup):
    m, tmp, port = setup
    out = _simfs("show", m.root)
    for want in ("target/iscsi", "iqn.2003-01.org.linux-iscsi.sim:rec", "tpgt_1 (enabled)",
                 f"portal 127.0.0.1:{port}", "lun_0 -> fileio_0/disk0 [alua ao: Active/Optimized]",
                 "acl iqn.1994-05.com.example:client", "mapped lun_5 -> lun_0 (read-only)",
                 f"disk0 [enabled, 1 export(s)] {tmp}/disk0.img 16 MiB",
                 "alua standby (id 11): Standby", "lu_gp lugp1",
                 f"pr: Write Exclusive held by {A}", f"* {A} key 0xa", f"{B} key 0xb",
                 "lugp1 (id 3): fileio_0/disk0"):
        assert want in out, (want, out)
    model = json.loads(_simfs("show", m.root, "--json"))
    assert model["kind"] == "topology"
    disk = model["backstores"][0]["devices"][0]
    assert disk["pr"]["state"] == "reserved" and disk["pr"]["holder"] == A


def test_topology_svg(setup):
    m, tmp, _ = setup
    svg = tmp / "topo.svg"
    _simfs("show", m.root, "--svg", str(svg))
    text = _svg_text(svg)
    for label in ("target/iscsi", "tpgt_1 (enabled)", "lun_0", "mapped lun_5 (read-only)",
                  "disk0 [enabled]", "alua standby (id 11)", "PR Write Exclusive",
                  f"holder {A}", "exports", "maps to"):
        assert label in text, (label, text)
    _png(svg)


needs_dot = pytest.mark.skipif(not shutil.which("dot"), reason="graphviz (dot) not installed")


@needs_dot
def test_pr_state_machine(setup):
    m, tmp, _ = setup
    assert "state RESERVED" in _simfs("show", m.root, "--pr", "fileio_0/disk0")
    svg = tmp / "pr.svg"
    _simfs("show", m.root, "--pr", "fileio_0/disk0", "--svg", str(svg))
    text = _svg_text(svg)
    assert "No registrations" in text and "RESERVE (type)" in text
    assert f"holder {A}" in text
    assert _fill(svg, "reserved") == show.HIGHLIGHT and _fill(svg, "none") != show.HIGHLIGHT
    _png(svg)


@needs_dot
def test_alua_state_machine_follows_a_failover(setup):
    m, tmp, _ = setup
    gp = f"{m.core}/fileio_0/disk0/alua"
    svg = tmp / "alua.svg"
    _simfs("show", m.root, "--alua", "fileio_0/disk0", "--svg", str(svg))
    assert _fill(svg, "s0") == show.HIGHLIGHT and _fill(svg, "s2") == show.HIGHLIGHT
    assert _fill(svg, "s3") != show.HIGHLIGHT
    m.ok(f"echo 3 > {gp}/ao/alua_access_state")  # the active group becomes unavailable
    m.ok(f"echo 0 > {gp}/standby/alua_access_state")
    _simfs("show", m.root, "--alua", "fileio_0/disk0", "--svg", str(svg))
    assert _fill(svg, "s3") == show.HIGHLIGHT
    assert "ao (id 10)" in _svg_text(svg) and "Unavailable" in _svg_text(svg)
    _png(svg)


def test_builtin_svg_without_graphviz(setup):
    """The SVG writer used when `dot` is missing draws the same labels."""
    m, tmp, _ = setup
    for args, labels in ((("--json",), ("target/iscsi", "mapped lun_5 -> lun_0 (read-only)")),
                         (("--json", "--pr", "fileio_0/disk0"), ("Reserved", "CLEAR")),
                         (("--json", "--alua", "fileio_0/disk0"), ("Transitioning",))):
        model = json.loads(_simfs("show", m.root, *args))
        svg = tmp / "builtin.svg"
        svg.write_text(show.builtin_svg(model))
        text = _svg_text(svg)
        for label in labels:
            assert label in text, (label, text)
        _png(svg)


def test_unknown_device(setup):
    m, _, _ = setup
    r = subprocess.run([*SIMFS, "show", m.root, "--pr", "nope/x"], capture_output=True,
                       text=True)
    assert r.returncode == 1 and "no device target/core/nope/x" in r.stderr


def _fill(svg: Path, title: str) -> str:
    """The fill colour of graphviz node ``title`` in an SVG that dot wrote."""
    m = re.search(r"<title>" + re.escape(title) + r"</title>\s*<(?:ellipse|polygon|path)"
                  r"[^>]*fill=\"([^\"]+)\"", svg.read_text())
    assert m, f"no node {title}"
    return m.group(1)
