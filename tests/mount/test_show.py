"""`simfs show`: the topology and the PR/ALUA state machines of a mounted tree, computed in
the daemon; as text, and as SVG rendered to PNG to check it draws what it says."""
from __future__ import annotations

import json
import math
import re
import shutil
import socket
import subprocess
from pathlib import Path

import pytest
from helpers import sh
from tracing import SIMFS

from simfs.daemon import show, show_svg

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
    for label in ("target/iscsi", "tpgt_1 (enabled)", "lun_0",
                  "mapped lun_5 -> lun_0 (read-only)",
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


# -- every picture, both ways, fits and reads ---------------------------------------------------
def _labels(svg: Path, size_factor: float) -> tuple[float, float, list[tuple[str, list]]]:
    """The picture's width and height, and each text's corners in picture coordinates.
    Widths are estimated at ``size_factor`` x font size per character."""
    import html as _html
    src = svg.read_text()
    vb = re.search(r'viewBox="([-\d.]+)[ ,]+([-\d.]+)[ ,]+([\d.]+)[ ,]+([\d.]+)"', src)
    assert vb, "no viewBox"
    vx, vy, w, h = (float(v) for v in vb.groups())
    g = re.search(r'<g[^>]*transform="([^"]*)"', src)
    tx = ty = 0.0
    if g:
        t = re.search(r"translate\(([-\d.]+)[ ,]+([-\d.]+)\)", g.group(1))
        if t:
            tx, ty = float(t.group(1)), float(t.group(2))
    out = []
    for m in re.finditer(r"<text([^>]*)>([^<]*)</text>", src):
        attrs, s = m.group(1), _html.unescape(m.group(2))
        if not s.strip():
            continue
        x = float(re.search(r' x="([-\d.]+)"', attrs).group(1))
        y = float(re.search(r' y="([-\d.]+)"', attrs).group(1))
        size = float((re.search(r'font-size="([\d.]+)', attrs) or [0, 14])[1])
        anchor = (re.search(r'text-anchor="(\w+)"', attrs) or [0, "start"])[1]
        width = len(s) * size * size_factor
        left = {"start": 0, "middle": -width / 2, "end": -width}[anchor]
        rot = re.search(r"rotate\(([-\d.]+)", attrs)
        a = math.radians(float(rot.group(1))) if rot else 0.0
        corners = []
        for px, py in ((left, -0.8 * size), (left + width, -0.8 * size),
                       (left + width, 0.2 * size), (left, 0.2 * size)):
            corners.append((tx + x + px * math.cos(a) - py * math.sin(a) - vx,
                            ty + y + px * math.sin(a) + py * math.cos(a) - vy))
        out.append((s, corners))
    return w, h, out


def _overlap(p: list, q: list) -> bool:
    """Two convex quadrilaterals overlap (separating axis test)."""
    for poly in (p, q):
        for i in range(4):
            (x1, y1), (x2, y2) = poly[i], poly[(i + 1) % 4]
            nx, ny = y1 - y2, x2 - x1
            a = [nx * x + ny * y for x, y in p]
            b = [nx * x + ny * y for x, y in q]
            if max(a) <= min(b) + 0.5 or max(b) <= min(a) + 0.5:
                return False
    return True


@pytest.fixture(scope="module")
def pictures(setup):
    """Models of every kind of picture, from the module's mount."""
    m, tmp, _ = setup
    A2 = "iqn.1994-05.com.example:outsider"
    subprocess.run([*SIMFS, "scsi", m.root, "fileio_0/disk0", "-I", A2, "tur"],
                   capture_output=True)
    models = {}
    for kind, args in (("topology", ()), ("pr", ("--pr", "fileio_0/disk0")),
                       ("alua", ("--alua", "fileio_0/disk0")),
                       ("access", ("--access", "fileio_0/disk0")),
                       ("paths", ("--paths", "fileio_0/disk0"))):
        models[kind] = json.loads(_simfs("show", m.root, "--json", *args))
    events = tmp / "events.jsonl"
    events.write_text("".join(json.dumps(e) + "\n" for e in (
        {"op": "scsi", "initiator": A, "device": "fileio_0/disk0",
         "opname": "PERSISTENT_RESERVE_OUT/REGISTER", "result": "GOOD"},
        {"op": "scsi", "initiator": B, "device": "fileio_0/disk0", "opname": "WRITE_16",
         "result": "RESERVATION_CONFLICT"},
        {"op": "scsi", "initiator": A, "device": "fileio_0/disk0", "opname": "TEST_UNIT_READY",
         "result": "CHECK_CONDITION", "sense_text": "UNIT ATTENTION 2ah/05h"})))
    models["sequence"] = json.loads(_simfs("show", "--sequence", str(events), "--json"))
    one = dict(models["paths"])  # one host: each path says what I/O finds there
    one["nexuses"] = [n for n in one["nexuses"] if n["initiator"] == A]
    models["paths1"] = one
    return tmp, models


KINDS = ("topology", "pr", "alua", "access", "paths", "paths1", "sequence")


@pytest.mark.parametrize("renderer", ["builtin", "dot"])
@pytest.mark.parametrize("kind", KINDS)
def test_every_label_inside_the_picture(pictures, kind, renderer):
    """Rendered to PNG at the size the SVG says, every label lies inside the picture;
    drawn without graphviz, no two labels overlap."""
    if renderer == "dot" and not shutil.which("dot"):
        pytest.skip("graphviz (dot) not installed")
    tmp, models = pictures
    svg = tmp / f"{kind}-{renderer}.svg"
    how = show.write_svg(models[kind], str(svg), renderer)
    builtin = how == "built-in"
    assert builtin == (renderer == "builtin" or kind not in show.DOT_KINDS)
    # simfs sizes its picture by its own generous estimate; graphviz by its font metrics
    w, h, labels = _labels(svg, 0.6 if builtin else 0.5)
    assert labels
    for s, corners in labels:
        for x, y in corners:
            assert -1 <= x <= w + 1 and -1 <= y <= h + 1, (s, (x, y), (w, h))
    if builtin:
        for i, (s1, c1) in enumerate(labels):
            for s2, c2 in labels[i + 1:]:
                assert not _overlap(c1, c2), (s1, s2)
    data = _png(svg)
    pw, ph = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert abs(pw - w * (4 / 3 if not builtin else 1)) <= 2 or abs(pw - w) <= 2, (pw, w)
    assert ph > 50


def test_same_labels_with_and_without_graphviz(pictures):
    """What a picture says does not depend on graphviz: each state and each mapped LUN."""
    if not shutil.which("dot"):
        pytest.skip("graphviz (dot) not installed")
    tmp, models = pictures
    for kind, must in (("topology", ["mapped lun_5 -> lun_0 (read-only)", "tpgt_1 (enabled)"]),
                       ("pr", ["No registrations", "Reserved", "RESERVE (type)", "CLEAR",
                               "PREEMPT (holder's key): new holder"]),
                       ("alua", ["Active/Optimized", "Standby", "Transitioning",
                                 "STPG / alua_access_state", "trans_delay_msecs done"])):
        for renderer in ("builtin", "dot"):
            svg = tmp / f"same-{kind}-{renderer}.svg"
            show.write_svg(models[kind], str(svg), renderer)
            text = _svg_text(svg)
            for label in must:
                assert label in text, (kind, renderer, label)


def test_access_says_who_may_write(pictures):
    _, models = pictures
    who = {w["name"]: w for w in show.who_may(models["access"])}
    # type 1, Write Exclusive, held by A: everyone reads, only the holder writes
    assert who[A]["holder"] and who[A]["read"] and who[A]["write"]
    assert who[B]["registered"] and who[B]["read"] and not who[B]["write"]
    out = who["iqn.1994-05.com.example:outsider"]
    assert not out["registered"] and out["read"] and not out["write"]
    text = show.render_text(models["access"])
    assert "iqn.1994-05.com.example:outsider: not registered; reads; writes: " \
           "RESERVATION CONFLICT" in text


def test_sequence_from_a_trace_file(pictures):
    _, models = pictures
    steps = models["sequence"]["steps"]
    assert [s["answer"] for s in steps] == ["GOOD", "RESERVATION CONFLICT",
                                             "CHECK CONDITION UNIT ATTENTION 2ah/05h"]


def test_paths_say_what_io_finds(pictures):
    tmp, models = pictures
    svg = tmp / "paths1.svg"
    show.write_svg(models["paths1"], str(svg))
    text = _svg_text(svg)
    port = next(n["port"] for n in models["paths1"]["nexuses"])
    state = next(g["state"] for g in models["paths1"]["groups"] if port in g["members"])
    assert A in text and show_svg.PATH_WORDS[state] in text, text
