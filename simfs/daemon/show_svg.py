"""The SVG pictures ``simfs show`` draws without graphviz (docs/introspection.md).

Every layout here is computed, not guessed: each node is sized from its text, the canvas
from its nodes and labels, and every edge label gets a place of its own, so nothing is
clipped and no two labels overlap (tests/mount/test_show.py renders each picture and
checks). Text widths are estimated from the character count with a margin that covers
Helvetica, Arial and DejaVu Sans. Pure functions of the model :mod:`simfs.daemon.show`
builds; no I/O.
"""

from __future__ import annotations

import html
import math

HIGHLIGHT = "#ffd54f"
PLAIN = "#eef3fb"
FONT = "Helvetica,Arial,sans-serif"
#: fill colour per ALUA state: green where I/O goes, grey where it cannot
ALUA_FILL = {0x0: "#a5d6a7", 0x1: "#dcedc8", 0x2: "#e0e0e0", 0x3: "#ffcdd2",
             0x4: "#fff9c4", 0xE: "#ffcdd2", 0xF: "#ffe0b2"}


def text_width(s: str, size: float) -> float:
    """A generous estimate of the width of ``s`` at font size ``size``."""
    wide = sum(1 for ch in s if ch.isupper() or ch in "mwMW@%")
    return (len(s) + 0.25 * wide) * size * 0.6


class Canvas:
    """SVG parts plus the extent they cover; ``svg()`` sizes the picture to fit."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.x0 = self.y0 = math.inf
        self.x1 = self.y1 = -math.inf

    def cover(self, x0: float, y0: float, x1: float, y1: float) -> None:
        self.x0, self.y0 = min(self.x0, x0), min(self.y0, y0)
        self.x1, self.y1 = max(self.x1, x1), max(self.y1, y1)

    def text(self, x: float, y: float, s: str, size: float = 12, anchor: str = "middle",
             weight: str = "normal", color: str = "#000", halo: bool = False,
             angle: float = 0.0) -> None:
        """Text with its baseline at ``y`` (turned by ``angle`` degrees about (x, y));
        ``halo`` paints white behind it (edge labels)."""
        w = text_width(s, size)
        left = {"start": 0.0, "middle": -w / 2, "end": -w}[anchor]
        a = math.radians(angle)
        for px, py in ((left, -size), (left + w, -size), (left, size * 0.3),
                       (left + w, size * 0.3)):
            rx, ry = x + px * math.cos(a) - py * math.sin(a), y + px * math.sin(a) + py * math.cos(a)
            self.cover(rx, ry, rx, ry)
        extra = (' stroke="white" stroke-width="4" paint-order="stroke" '
                 'stroke-linejoin="round"') if halo else ""
        if angle:
            extra += f' transform="rotate({angle:.1f} {x:.1f} {y:.1f})"'
        self.parts.append(f'<text x="{x:.1f}" y="{y:.1f}" font-family="{FONT}" '
                          f'font-size="{size}" text-anchor="{anchor}" font-weight="{weight}" '
                          f'fill="{color}"{extra}>{html.escape(s)}</text>')

    def box(self, cx: float, cy: float, w: float, h: float, fill: str = PLAIN,
            stroke: str = "#333", width: float = 1, rx: float = 8, dash: bool = False) -> None:
        self.cover(cx - w / 2 - width, cy - h / 2 - width, cx + w / 2 + width,
                   cy + h / 2 + width)
        d = ' stroke-dasharray="5,3"' if dash else ""
        self.parts.append(f'<rect x="{cx - w / 2:.1f}" y="{cy - h / 2:.1f}" width="{w:.1f}" '
                          f'height="{h:.1f}" rx="{rx}" fill="{fill}" stroke="{stroke}" '
                          f'stroke-width="{width}"{d}/>')

    def lines_in_box(self, cx: float, cy: float, lines: list[str], size: float = 11,
                     weight_first: bool = False, color: str = "#000") -> None:
        top = cy - (len(lines) - 1) * (size + 3) / 2
        for i, s in enumerate(lines):
            self.text(cx, top + i * (size + 3) + size * 0.35, s, size,
                      weight="bold" if weight_first and i == 0 else "normal", color=color)

    def path(self, d: str, pts: list[tuple[float, float]], color: str = "#555",
             dash: bool = False, arrow: bool = True, width: float = 1.2) -> None:
        for x, y in pts:
            self.cover(x - 6, y - 6, x + 6, y + 6)
        da = ' stroke-dasharray="6,4"' if dash else ""
        mk = ' marker-end="url(#arrow)"' if arrow else ""
        self.parts.append(f'<path d="{d}" fill="none" stroke="{color}" '
                          f'stroke-width="{width}"{da}{mk}/>')

    def svg(self, margin: float = 16) -> str:
        if self.x0 == math.inf:
            self.cover(0, 0, 100, 40)
        w = self.x1 - self.x0 + 2 * margin
        h = self.y1 - self.y0 + 2 * margin
        tx, ty = margin - self.x0, margin - self.y0
        return ('<?xml version="1.0" encoding="UTF-8"?>\n'
                f'<svg xmlns="http://www.w3.org/2000/svg" width="{w:.0f}" height="{h:.0f}" '
                f'viewBox="0 0 {w:.0f} {h:.0f}">\n'
                '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" '
                'markerWidth="8" markerHeight="8" orient="auto-start-reverse">'
                '<path d="M0,0 L10,5 L0,10 z" fill="#555"/></marker></defs>\n'
                '<rect width="100%" height="100%" fill="white"/>\n'
                f'<g transform="translate({tx:.1f},{ty:.1f})">\n'
                + "\n".join(self.parts) + "\n</g>\n</svg>\n")


def _node_size(lines: list[str], size: float = 11) -> tuple[float, float]:
    w = max(text_width(s, size) for s in lines) + 28
    return max(w, 90), len(lines) * (size + 3) + 18


# -- topology ----------------------------------------------------------------------------------
def topology(title: str, children: list) -> str:
    """The outline (label, children) as an indented tree of boxes."""
    c = Canvas()
    c.text(0, 14, title, 14, "start", "bold")
    rows: list[tuple[int, str]] = []

    def walk(nodes: list, depth: int) -> None:
        for label, kids in nodes:
            rows.append((depth, label))
            walk(kids, depth + 1)
    walk(children, 0)
    h, indent = 28, 24
    for i, (d, label) in enumerate(rows):
        y = 30 + i * h
        x = d * indent
        w = text_width(label, 12) + 18
        c.box(x + w / 2, y + (h - 6) / 2, w, h - 6, rx=5)
        c.text(x + 9, y + 16, label, 12, "start")
        if d:
            c.path(f"M{x - indent + 9},{y - 6} V{y + 11} H{x}", [(x, y)], color="#888",
                   arrow=False, width=1)
    return c.svg()


# -- state machines: nodes in a row, forward edges above, backward below --------------------
def row_machine(title: str, nodes: list[tuple[str, list[str], str]],
                edges: list[tuple[str, str, str]], dashed: set[str] = frozenset()) -> str:
    """``nodes``: (key, label lines, fill); ``edges``: (from, to, label)."""
    c = Canvas()
    size, lsize = 11, 10
    dims = {k: _node_size(lines, size) for k, lines, _ in nodes}
    order = [k for k, _, _ in nodes]
    idx = {k: i for i, k in enumerate(order)}
    self_w = {k: max([text_width(lb, lsize) for a, b, lb in edges if a == b == k] + [0])
              for k in order}
    # gap i (between node i and i+1) must hold the labels of edges spanning just it
    gaps = []
    for i in range(len(order) - 1):
        span = [text_width(lb, lsize) for a, b, lb in edges
                if a != b and sorted((idx[a], idx[b])) == [i, i + 1]]
        need = max(span + [60]) + 30
        left, right = order[i], order[i + 1]
        # self-loop labels of neighbours sit at the same height: keep them apart
        need = max(need, (self_w[left] + self_w[right]) / 2 + 30
                   - (dims[left][0] + dims[right][0]) / 2)
        gaps.append(need)
    xs, x = {}, 0.0
    for i, k in enumerate(order):
        x += dims[k][0] / 2
        xs[k] = x
        x += dims[k][0] / 2 + (gaps[i] if i < len(gaps) else 0)
    node_h = max(h for _, h in dims.values())
    cy = 0.0
    # levels: each edge over/under its span, stacked so labels never share a height
    above = [(a, b, lb) for a, b, lb in edges if a != b and idx[a] < idx[b]]
    below = [(a, b, lb) for a, b, lb in edges if a != b and idx[a] > idx[b]]
    loops = [(a, b, lb) for a, b, lb in edges if a == b]
    step = 34

    def levels(group):
        placed: list[tuple[float, float, int]] = []
        out = []
        for a, b, lb in sorted(group, key=lambda e: abs(idx[e[0]] - idx[e[1]])):
            lo, hi = sorted((xs[a], xs[b]))
            lvl = 1
            while any(not (hi <= p0 or lo >= p1) and pl == lvl for p0, p1, pl in placed):
                lvl += 1
            placed.append((lo, hi, lvl))
            out.append((a, b, lb, lvl))
        return out

    top = levels(above)
    bottom = levels(below)
    top_max = max([lvl for *_, lvl in top] + [0])
    for a, b, lb, lvl in top + bottom:
        sign = -1 if idx[a] < idx[b] else 1
        x1, x2 = xs[a], xs[b]
        ya = cy + sign * node_h / 2
        apex = cy + sign * (node_h / 2 + lvl * step)
        off = 12 if x2 > x1 else -12
        d = (f"M{x1 + off:.1f},{ya:.1f} C{x1 + off:.1f},{apex:.1f} {x2 - off:.1f},"
             f"{apex:.1f} {x2 - off:.1f},{ya:.1f}")
        c.path(d, [(x1, ya), (x2, ya), ((x1 + x2) / 2, apex)], dash=sign > 0)
        mid_y = cy + sign * (node_h / 2 + lvl * step * 0.75)
        c.text((x1 + x2) / 2, mid_y + (4 if sign < 0 else 8), lb, lsize, halo=True)
    for a, _, lb in loops:
        x, ya = xs[a], cy - node_h / 2
        hgt = (top_max + 1) * step
        d = (f"M{x - 18:.1f},{ya:.1f} C{x - 40:.1f},{ya - hgt:.1f} {x + 40:.1f},"
             f"{ya - hgt:.1f} {x + 18:.1f},{ya:.1f}")
        c.path(d, [(x, ya - hgt * 0.75)])
        c.text(x, ya - hgt * 0.75 - 6, lb, lsize, halo=True)
    for k, lines, fill in nodes:
        w, h = dims[k]
        hot = fill == HIGHLIGHT
        c.box(xs[k], cy, w, h, fill, width=3 if hot else 1, rx=h / 2, dash=k in dashed)
        c.lines_in_box(xs[k], cy, lines, size, weight_first=True,
                       color="#999" if k in dashed else "#000")
    c.text(c.x0, c.y0 - 12, title, 14, "start", "bold")
    return c.svg()


def star_machine(title: str, hub: tuple[list[str], str],
                 spokes: list[tuple[list[str], str, bool]], out_label: str,
                 in_label: str) -> str:
    """A hub state every other state passes through (ALUA's Transitioning): the spokes in
    two columns, an arrow each way with its label, the hub in the middle.
    ``hub``: (label lines, fill); ``spokes``: (label lines, fill, greyed out)."""
    c = Canvas()
    size, lsize = 11, 10
    hub_lines, hub_fill = hub
    half = (len(spokes) + 1) // 2
    per_side = max(half, len(spokes) - half)
    hw, hh = _node_size(hub_lines, size)
    hh = max(hh, per_side * 26 + 14)
    dims = [_node_size(lines, size) for lines, _, _ in spokes]
    colw = max(w for w, _ in dims)
    lab = max(text_width(out_label, lsize), text_width(in_label, lsize))
    row_h = max(max(h for _, h in dims) + 30, 90)
    dx = hw / 2 + lab + 70 + colw / 2
    for i, ((lines, fill, dim), (w, h)) in enumerate(zip(spokes, dims)):
        side = -1 if i < half else 1
        r = i if i < half else i - half
        n = half if side < 0 else len(spokes) - half
        sy = (r - (n - 1) / 2) * row_h
        hy = (r - (n - 1) / 2) * 26
        sx = side * dx
        ex, hx = sx - side * w / 2, side * hw / 2
        for lb, sgn in ((out_label, -1), (in_label, 1)):
            y1, y2 = sy + sgn * 6, hy + sgn * 6
            if sgn < 0:
                c.path(f"M{ex:.1f},{y1:.1f} L{hx:.1f},{y2:.1f}", [(ex, y1), (hx, y2)])
            else:
                c.path(f"M{hx:.1f},{y2:.1f} L{ex:.1f},{y1:.1f}", [(ex, y1), (hx, y2)],
                       dash=True)
            # the label runs along its arrow: above the first, below the second
            mx, my = (ex + hx) / 2, (y1 + y2) / 2
            ang = math.atan2(y2 - y1, hx - ex)
            if abs(ang) > math.pi / 2:
                ang -= math.copysign(math.pi, ang)
            off = -4 if sgn < 0 else 4 + lsize
            c.text(mx - off * math.sin(ang), my + off * math.cos(ang), lb, lsize, halo=True,
                   angle=math.degrees(ang))
        c.box(sx, sy, w, h, fill, width=3 if fill == HIGHLIGHT else 1, rx=h / 2, dash=dim)
        c.lines_in_box(sx, sy, lines, size, weight_first=True, color="#999" if dim else "#000")
    c.box(0, 0, hw, hh, hub_fill, width=3 if hub_fill == HIGHLIGHT else 1, rx=18)
    c.lines_in_box(0, 0, hub_lines, size, weight_first=True)
    c.text(c.x0, c.y0 - 12, title, 14, "start", "bold")
    return c.svg()


# -- who may read and write an LU ------------------------------------------------------------
def access(title: str, lu_lines: list[str], who: list[dict]) -> str:
    """The LU on the right, each initiator on the left with its key (or none), an arrow
    per initiator saying what the reservation lets it do. ``who``: dicts with ``lines``,
    ``holder``, ``read``, ``write``."""
    c = Canvas()
    size = 11
    dims = [_node_size(w["lines"], size) for w in who] or [(120, 40)]
    colw = max(w for w, _ in dims)
    lw, lh = _node_size(lu_lines, size)
    labels = [access_label(w) for w in who]
    gap = max([text_width(s, 10) for s in labels] + [80]) + 80
    row_h = max(h for _, h in dims) + 26
    total = row_h * len(who)
    lh = max(lh, 40)
    lx = colw + gap + lw / 2
    for i, (w, (bw, bh), lb) in enumerate(zip(who, dims, labels)):
        y = i * row_h - total / 2 + row_h / 2
        c.box(colw / 2, y, bw, bh, HIGHLIGHT if w["holder"] else PLAIN,
              width=3 if w["holder"] else 1, dash=not w.get("registered", True))
        c.lines_in_box(colw / 2, y, w["lines"], size, weight_first=True)
        x1, x2 = colw / 2 + bw / 2, lx - lw / 2
        ty = (i - (len(who) - 1) / 2) * min(18, lh / max(len(who), 1))
        color = "#2e7d32" if w["write"] else ("#1565c0" if w["read"] else "#c62828")
        c.path(f"M{x1:.1f},{y:.1f} L{x2:.1f},{ty:.1f}", [(x1, y), (x2, ty)], color=color,
               dash=not w["write"], width=2 if w["write"] else 1.2)
        ang = math.atan2(ty - y, x2 - x1)
        c.text((x1 + x2) / 2 + 4 * math.sin(ang), (y + ty) / 2 - 4 * math.cos(ang), lb, 10,
               halo=True, angle=math.degrees(ang), color=color)
    c.box(lx, 0, lw, max(lh, total * 0.5), "#dcedc8", width=2)
    c.lines_in_box(lx, 0, lu_lines, size, weight_first=True)
    c.text(c.x0, c.y0 - 12, title, 14, "start", "bold")
    return c.svg()


def access_label(w: dict) -> str:
    if w["read"] and w["write"]:
        return "reads and writes"
    if w["read"]:
        return "reads; writes: RESERVATION CONFLICT"
    return "reads and writes: RESERVATION CONFLICT"


# -- paths: a host, its paths, their port groups, the LU -------------------------------------
#: what a host's I/O finds on a path in each state
PATH_WORDS = {0x0: "I/O goes here", 0x1: "I/O possible, slower", 0x2: "standby: NOT READY",
              0x3: "unavailable: NOT READY", 0x4: "some LBAs", 0xE: "offline",
              0xF: "transitioning"}

def paths(title: str, hosts: list[str], groups: list[dict], lu_lines: list[str],
          used: set[tuple[str, str]]) -> str:
    """``groups``: dicts with ``lines``, ``state``, ``ports`` (member paths); ``used``:
    (host, port) pairs that have carried commands. Hosts left, port groups (boxes holding
    their ports) in the middle, the LU right."""
    c = Canvas()
    size = 11
    hosts = hosts or ["(no initiator yet)"]
    hdims = [_node_size([h], size) for h in hosts]
    hw = max(w for w, _ in hdims)
    gap = 170 if len(hosts) > 1 else 230
    port_w = max([text_width(p, 10) + 24 for g in groups for p in g["ports"]] + [140])
    gw = max([port_w + 30] + [text_width(s, size) + 30 for g in groups for s in g["lines"]])
    y, rows = 0.0, []
    for g in groups:
        head = len(g["lines"]) * (size + 3) + 12
        h = head + max(len(g["ports"]), 1) * 30 + 8
        rows.append((y, h, head))
        y += h + 24
    total = y - 24
    gx = hw + gap + gw / 2
    lu_w, lu_h = _node_size(lu_lines, size)
    lx = gx + gw / 2 + 120 + lu_w / 2
    port_pos: dict[str, tuple[float, float]] = {}
    for g, (top, h, head) in zip(groups, rows):
        cy = top + h / 2 - total / 2
        fill = ALUA_FILL.get(g["state"], PLAIN)
        c.box(gx, cy, gw, h, fill, width=1.5, rx=10)
        for i, s in enumerate(g["lines"]):
            c.text(gx, cy - h / 2 + 16 + i * (size + 3), s, size,
                   weight="bold" if i == 0 else "normal")
        for k, p in enumerate(g["ports"]):
            py = cy - h / 2 + head + 15 + k * 30
            c.box(gx, py, port_w, 22, "#ffffff", rx=4)
            c.text(gx, py + 4, p, 10)
            port_pos[p] = (gx - port_w / 2, py)
        ok = g["state"] in (0x0, 0x1, 0x4)
        c.path(f"M{gx + gw / 2:.1f},{cy:.1f} L{lx - lu_w / 2:.1f},{cy * 0.2:.1f}",
               [(gx + gw / 2, cy), (lx - lu_w / 2, cy * 0.2)],
               color="#2e7d32" if ok else "#9e9e9e", dash=not ok)
    for i, h in enumerate(hosts):
        hy = (i - (len(hosts) - 1) / 2) * (hdims[i][1] + 20)
        c.box(hw / 2, hy, hdims[i][0], hdims[i][1], "#e3f2fd", width=1.5)
        c.text(hw / 2, hy + 4, h, size, weight="bold")
        for g in groups:
            ok = g["state"] in (0x0, 0x1, 0x4)
            best = g["state"] == 0x0
            for p in g["ports"]:
                if (h, p) not in used and used:
                    continue
                px, py = port_pos[p]
                color = "#2e7d32" if best else ("#558b2f" if ok else "#9e9e9e")
                c.path(f"M{hw:.1f},{hy:.1f} L{px:.1f},{py:.1f}", [(hw, hy), (px, py)],
                       color=color, dash=not ok, width=2.5 if best else 1.2)
                if len(hosts) == 1:  # one host: say on each path what I/O finds there
                    ang = math.atan2(py - hy, px - hw)
                    c.text((hw + px) / 2 + 5 * math.sin(ang), (hy + py) / 2 - 5 * math.cos(ang),
                           PATH_WORDS.get(g["state"], ""), 10, halo=True,
                           angle=math.degrees(ang), color=color)
    c.box(lx, 0, lu_w, max(lu_h, 50), "#dcedc8", width=2)
    c.lines_in_box(lx, 0, lu_lines, size, weight_first=True)
    c.text(c.x0, c.y0 - 12, title, 14, "start", "bold")
    return c.svg()


# -- a sequence of SCSI commands ---------------------------------------------------------------
def sequence(title: str, actors: list[str], target: str,
             steps: list[tuple[str, str, str, bool]]) -> str:
    """Lifelines for each initiator and the LU; ``steps``: (initiator, command, answer,
    answer is bad). A request arrow, then its answer dashed back."""
    c = Canvas()
    size, lsize = 11, 10
    names = actors + [target]
    widths = [text_width(n, size) + 24 for n in names]
    longest = max([text_width(s, lsize) for _, a, b, _ in steps for s in (a, b)] + [100])
    xs, x = [], 0.0
    for i, w in enumerate(widths[:-1]):
        x += w / 2 if i == 0 else widths[i - 1] / 2 + w / 2 + 30
        xs.append(x)
    # labels start right of their initiator's lifeline (requests) or end left of the LU's
    # (answers): the LU stands one longest label right of the last initiator
    last = xs[-1] if xs else 0.0
    xs.append(max(last + longest + 40, last + (widths[-2] if xs else 0) / 2 + widths[-1] / 2 + 30))
    row_h, top = 44, 30
    bottom = top + 16 + row_h * len(steps)
    tx = xs[-1]
    for n, x0, w in zip(names, xs, widths):
        c.box(x0, 0, w, 26, "#dcedc8" if n == target else "#e3f2fd", rx=5)
        c.text(x0, 4, n, size, weight="bold")
        c.path(f"M{x0:.1f},{13:.1f} V{bottom:.1f}", [(x0, 13), (x0, bottom)],
               color="#bbb", arrow=False)
    for k, (who, cmd, ans, bad) in enumerate(steps):
        ax = xs[names.index(who)]
        y = top + k * row_h
        c.path(f"M{ax:.1f},{y:.1f} H{tx:.1f}", [(ax, y), (tx, y)], color="#333")
        c.text(ax + 8, y - 4, cmd, lsize, "start", halo=True)
        color = "#c62828" if bad else "#2e7d32"
        c.path(f"M{tx:.1f},{y + 16:.1f} H{ax:.1f}", [(ax, y + 16), (tx, y + 16)], color=color,
               dash=True)
        c.text(tx - 8, y + 29, ans, lsize, "end", halo=True, color=color)
    c.text(c.x0, c.y0 - 12, title, 14, "start", "bold")
    return c.svg()
