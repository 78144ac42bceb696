"""``simfs show``: the topology of a mounted tree, and the PR and ALUA state machines of a
device, as text or as an SVG picture (docs/introspection.md).

Two halves:

* :func:`handle` runs in the daemon (a ``show`` request on ``trace.sock``): it reads the
  model (``core.hbas``, the fabric modules, ``core.alua``) under the tree lock and returns
  plain JSON: what is there, not how to draw it.
* :func:`render_text` and :func:`write_svg` run in the client. The SVG comes from
  graphviz's ``dot`` when it is installed (Debian ``graphviz``), else it is written
  directly (a tree of boxes; the state machines on a circle).
"""

from __future__ import annotations

import html
import math
import shutil
import subprocess
from typing import Any

from simfs.core.t10 import spc as t10

#: (state, name) in the order the state machine is drawn
ALUA_STATES = list(t10.ALUA_STATE_NAMES.items())
#: supported_states bits (tg_pt_gp alua_support_*) per state
ALUA_SUPPORT_BITS = t10.ALUA_STATE_SUPPORT
PR_TYPES = t10.PR_TYPE_NAMES


# == the daemon side ==========================================================================
def handle(core: Any, req: dict) -> dict:
    """A ``show`` request: ``what`` is ``topology``, ``pr`` or ``alua`` (with ``device``)."""
    with core.tree_lock:
        what = req.get("what", "topology")
        if what == "topology":
            return topology(core)
        dev = _device(core, req.get("device", ""))
        if dev is None:
            return {"error": f"no device target/core/{req.get('device')} "
                             "(HBA/DEV, e.g. fileio_0/disk0)"}
        if what == "pr":
            return {"kind": "pr", "device": _dev_name(dev), "pr": _pr(dev)}
        if what == "alua":
            return {"kind": "alua", "device": _dev_name(dev), "groups": _tg_pt_gps(dev)}
        return {"error": f"unknown show {what!r} (topology, pr, alua)"}


def _device(core: Any, name: str) -> Any:
    hba_name, _, dev_name = name.strip("/").partition("/")
    hba = core.hbas.get(hba_name)
    return hba.devices.get(dev_name) if hba is not None else None


def _dev_name(dev: Any) -> str:
    return f"{dev.hba.name}/{dev.name}"


def topology(core: Any) -> dict:
    return {"kind": "topology", "profile": core.profile.name,
            "fabrics": _fabrics(core), "backstores": _backstores(core),
            "lu_gps": _lu_gps(core)}


def _fabrics(core: Any) -> list[dict]:
    out = []
    target = getattr(core, "target_group", None)
    children = target.children.items() if target is not None else ()
    for dirname, group in sorted(children):
        fmod = getattr(group, "obj", None)
        if fmod is None or not hasattr(fmod, "wwns"):
            continue
        targets = []
        for wname, wwn in sorted(fmod.wwns.items()):
            tpgs = []
            for tname, tpg in sorted(wwn.tpgs.items()):
                tpgs.append(_tpg(tname, tpg))
            targets.append({"wwn": wname, "tpgs": tpgs})
        out.append({"name": dirname, "targets": targets})
    return out


def _tpg(name: str, tpg: Any) -> dict:
    luns = []
    for lname, lun in sorted(tpg.luns.items(), key=lambda kv: getattr(kv[1], "lun", 0)):
        dev = getattr(lun, "dev", None)
        gp = getattr(lun, "tg_pt_gp", None)
        luns.append({"name": lname, "lun": getattr(lun, "lun", None),
                     "device": _dev_name(dev) if dev is not None else None,
                     "tg_pt_gp": getattr(gp, "name", None),
                     "alua_state": _state_name(gp.access_state) if gp is not None else None,
                     "offline": bool(getattr(lun, "offline", False))})
    acls = []
    for aname, acl in sorted(tpg.acls.items()):
        mapped = []
        for mlun, deve in sorted(getattr(acl, "deves", {}).items()):
            lun = getattr(deve, "lun", None)
            mapped.append({"mapped_lun": mlun,
                           "lun": getattr(lun, "group_name", None),
                           "read_only": bool(getattr(deve, "lun_access_ro", False))})
        acls.append({"name": aname, "dynamic": bool(getattr(acl, "dynamic", False)),
                     "sessions": len(getattr(acl, "sessions", {}) or {}),
                     "mapped_luns": mapped})
    portals = []
    for np in getattr(tpg, "nps", []):
        text = getattr(np, "sockaddr_text", None)
        portals.append(text() if callable(text) else str(getattr(np, "name", np)))
    # a fabric without an enable attribute (tcm_loop) has TPGs that are always active
    has_enable = getattr(getattr(tpg, "ops", None), "has_enable", True)
    return {"name": name, "tpgt": getattr(tpg, "tpgt", None),
            "enabled": bool(getattr(tpg, "enabled", False)) or not has_enable,
            "portals": portals,
            "luns": luns, "acls": acls}


def _backstores(core: Any) -> list[dict]:
    out = []
    for hname, hba in sorted(core.hbas.items()):
        devs = []
        for dname, dev in sorted(hba.devices.items()):
            storage, size = "", None
            try:
                storage = dev.bdev.describe_storage()
            except Exception:  # noqa: BLE001 - an unconfigured backend
                pass
            if dev.configured:
                try:
                    size = dev.bdev.get_blocks() * dev.attrib.block_size
                except Exception:  # noqa: BLE001
                    size = None
            lu_gp = getattr(dev, "lu_gp", None)
            devs.append({"name": dname, "configured": bool(dev.configured),
                         "storage": storage, "size": size,
                         "serial": getattr(dev.wwn, "unit_serial", "") or "",
                         "exports": len(getattr(dev, "luns", []) or []),
                         "lu_gp": getattr(lu_gp, "name", None),
                         "tg_pt_gps": _tg_pt_gps(dev), "pr": _pr(dev)})
        out.append({"name": hname, "plugin": getattr(hba.backend, "name", "?"),
                    "devices": devs})
    return out


def _tg_pt_gps(dev: Any) -> list[dict]:
    out = []
    for gp in getattr(dev, "tg_pt_gps", []) or []:
        members = []
        for m in getattr(gp, "members", []):
            try:
                members.append(m.member_path())
            except Exception:  # noqa: BLE001
                members.append(str(getattr(m, "lun", "?")))
        out.append({"name": gp.name, "id": gp.id, "state": gp.access_state,
                    "state_name": _state_name(gp.access_state),
                    "status": getattr(gp, "access_status", 0),
                    "supported": getattr(gp, "supported_states", 0xFF),
                    "trans_delay_msecs": getattr(gp, "trans_delay_msecs", 0),
                    "members": members})
    return out


def _pr(dev: Any) -> dict:
    pr = dev.pr
    holder = pr.holder
    regs = []
    for r in pr.registrations:
        regs.append({"initiator": r.initiator, "isid": r.isid, "key": f"0x{r.key:x}",
                     "port": f"{r.fabric}/{r.target_wwn}/tpgt_{r.tpgt}/lun_{r.lun}",
                     "all_tg_pt": bool(r.all_tg_pt), "aptpl": bool(r.aptpl),
                     "holder": holder is not None and r is holder})
    res_type = getattr(holder, "res_type", 0) or pr.res_type if holder is not None else 0
    return {"generation": pr.generation, "registrations": regs,
            "holder": holder.node() if holder is not None else None,
            "holder_key": f"0x{holder.key:x}" if holder is not None else None,
            "type": res_type, "type_name": PR_TYPES.get(res_type, "") if holder else None,
            "aptpl": bool(pr.aptpl_active),
            "spc2_holder": list(pr.spc2_holder) if pr.spc2_holder else None,
            "state": pr_state(pr)}


def pr_state(pr: Any) -> str:
    if pr.holder is not None:
        return "reserved"
    if pr.registrations:
        return "registered"
    return "none"


def _state_name(state: int) -> str:
    return dict(ALUA_STATES).get(state, f"0x{state:x}")


def _lu_gps(core: Any) -> list[dict]:
    alua = getattr(core, "alua", None)
    if alua is None:
        return []
    gps = [alua.default_lu_gp] + [g for g in alua.lu_gps if g is not alua.default_lu_gp]
    return [{"name": g.name, "id": g.id,
             "members": [_dev_name(d) for d in getattr(g, "members", [])]} for g in gps]


# == text =====================================================================================
def _size(n: int | None) -> str:
    if not n:
        return ""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:g} {unit}" if unit == "B" else f"{n:.4g} {unit}"
        n /= 1024  # type: ignore[assignment]
    return ""


def outline(model: dict) -> tuple[str, list]:
    """The topology as (label, children) nodes: what both text and SVG trees draw."""
    fabrics = []
    for fab in model["fabrics"]:
        targets = []
        for t in fab["targets"]:
            tpgs = []
            for tpg in t["tpgs"]:
                kids = []
                for p in tpg["portals"]:
                    kids.append((f"portal {p}", []))
                for lun in tpg["luns"]:
                    alua = f" [alua {lun['tg_pt_gp']}: {lun['alua_state']}]" \
                        if lun["tg_pt_gp"] else ""
                    off = " OFFLINE" if lun["offline"] else ""
                    kids.append((f"{lun['name']} -> {lun['device'] or '(no device)'}"
                                 f"{alua}{off}", []))
                for acl in tpg["acls"]:
                    maps = [(f"mapped lun_{m['mapped_lun']} -> {m['lun']}"
                             f"{' (read-only)' if m['read_only'] else ''}", [])
                            for m in acl["mapped_luns"]]
                    extra = ", dynamic" if acl["dynamic"] else ""
                    kids.append((f"acl {acl['name']} ({acl['sessions']} session(s){extra})",
                                 maps))
                state = "enabled" if tpg["enabled"] else "disabled"
                tpgs.append((f"{tpg['name']} ({state})", kids))
            targets.append((t["wwn"], tpgs))
        fabrics.append((f"target/{fab['name']}", targets))
    stores = []
    for hba in model["backstores"]:
        devs = []
        for d in hba["devices"]:
            kids = []
            where = " ".join(x for x in (d["storage"], _size(d["size"])) if x)
            if d["serial"]:
                kids.append((f"serial {d['serial']}", []))
            for gp in d["tg_pt_gps"]:
                members = ", ".join(gp["members"]) or "no members"
                kids.append((f"alua {gp['name']} (id {gp['id']}): {gp['state_name']}"
                             f" <- {members}", []))
            if d["lu_gp"]:
                kids.append((f"lu_gp {d['lu_gp']}", []))
            pr = d["pr"]
            if pr["registrations"] or pr["spc2_holder"]:
                regs = [(f"{'* ' if r['holder'] else ''}{r['initiator']}"
                         f"{',i,0x' + r['isid'] if r['isid'] else ''} key {r['key']}"
                         f" via {r['port']}", []) for r in pr["registrations"]]
                head = (f"pr: {pr['type_name']} held by {pr['holder']}" if pr["holder"]
                        else "pr: registered, no reservation")
                if pr["spc2_holder"]:
                    head = f"SPC-2 reservation held by {'/'.join(pr['spc2_holder'])}"
                kids.append((f"{head} (generation 0x{pr['generation']:x})", regs))
            state = "enabled" if d["configured"] else "not enabled"
            exports = f", {d['exports']} export(s)" if d["exports"] else ""
            devs.append((f"{d['name']} [{state}{exports}] {where}".rstrip(), kids))
        stores.append((f"{hba['name']} ({hba['plugin']})", devs))
    lugps = [(f"{g['name']} (id {g['id']}): {', '.join(g['members']) or 'no members'}", [])
             for g in model.get("lu_gps", [])]
    root = [*fabrics, ("backstores: target/core", stores)]
    if lugps:
        root.append(("alua lu_gps: target/core/alua/lu_gps", lugps))
    return f"simfs ({model.get('profile', '?')} profile)", root


def _tree_lines(children: list, prefix: str = "") -> list[str]:
    lines = []
    for i, (label, kids) in enumerate(children):
        last = i == len(children) - 1
        lines.append(f"{prefix}{'└── ' if last else '├── '}{label}")
        lines.extend(_tree_lines(kids, prefix + ("    " if last else "│   ")))
    return lines


def render_text(model: dict) -> str:
    kind = model.get("kind")
    if kind == "topology":
        title, children = outline(model)
        if not model["fabrics"] and not model["backstores"]:
            children = [("(empty: no fabric, no backstore)", [])] + children
        return "\n".join([title, *_tree_lines(children)]) + "\n"
    if kind == "pr":
        pr = model["pr"]
        lines = [f"{model['device']}: persistent reservations, state {pr['state'].upper()}",
                 f"  generation 0x{pr['generation']:x}, APTPL {'on' if pr['aptpl'] else 'off'}"]
        if pr["holder"]:
            lines.append(f"  holder {pr['holder']} key {pr['holder_key']}: {pr['type_name']}")
        for r in pr["registrations"]:
            lines.append(f"  {'*' if r['holder'] else '-'} {r['initiator']}"
                         f"{',i,0x' + r['isid'] if r['isid'] else ''} key {r['key']} "
                         f"via {r['port']}")
        return "\n".join(lines) + "\n"
    if kind == "alua":
        lines = [f"{model['device']}: ALUA target port groups"]
        for gp in model["groups"]:
            lines.append(f"  {gp['name']} (id {gp['id']}): {gp['state_name']}; members: "
                         f"{', '.join(gp['members']) or 'none'}")
        return "\n".join(lines) + "\n"
    return str(model) + "\n"


# == SVG ======================================================================================
def write_svg(model: dict, path: str) -> str:
    """Draw ``model`` into ``path``; returns how ("graphviz dot" or "built-in")."""
    svg, how = None, "built-in"
    if shutil.which("dot"):
        try:
            svg = subprocess.run(["dot", "-Tsvg"], input=to_dot(model).encode(),
                                 capture_output=True, check=True, timeout=60).stdout.decode()
            how = "graphviz dot"
        except (OSError, subprocess.SubprocessError):
            svg = None
    if svg is None:
        svg = builtin_svg(model)
    with open(path, "w") as f:
        f.write(svg)
    return how


def _q(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


HIGHLIGHT = "#ffd54f"


def to_dot(model: dict) -> str:
    """Graphviz source for the model (topology, PR or ALUA state machine)."""
    kind = model.get("kind")
    out = ["digraph simfs {", '  graph [fontname="Helvetica" rankdir=LR];',
           '  node [fontname="Helvetica" fontsize=11 shape=box style="rounded,filled" '
           'fillcolor="#eef3fb"];', '  edge [fontname="Helvetica" fontsize=10];']
    if kind == "topology":
        out += _topology_dot(model)
    elif kind == "pr":
        out += _pr_dot(model)
    elif kind == "alua":
        out += _alua_dot(model)
    out.append("}")
    return "\n".join(out) + "\n"


def _topology_dot(model: dict) -> list[str]:
    out: list[str] = []
    ids = iter(range(1, 1 << 30))

    def node(label: str, color: str = "#eef3fb", parent: str | None = None,
             extra: str = "") -> str:
        nid = f"n{next(ids)}"
        out.append(f"  {nid} [label={_q(label)} fillcolor={_q(color)}{extra}];")
        if parent:
            out.append(f"  {parent} -> {nid};")
        return nid

    root = node(f"simfs ({model.get('profile', '?')} profile)", "#ffffff",
                extra=' shape=plaintext style=""')
    luns: dict[tuple, str] = {}
    exports: list[tuple[str, str]] = []
    maps: list[tuple[str, tuple]] = []
    for fab in model["fabrics"]:
        f = node(f"target/{fab['name']}", "#c8e6c9", root)
        for t in fab["targets"]:
            w = node(t["wwn"], parent=f)
            for tpg in t["tpgs"]:
                state = "enabled" if tpg["enabled"] else "disabled"
                p = node(f"{tpg['name']} ({state})", "#e3f2fd", w)
                for portal in tpg["portals"]:
                    node(f"portal {portal}", "#ffffff", p)
                for lun in tpg["luns"]:
                    label = lun["name"]
                    if lun["tg_pt_gp"]:
                        label += f"\nalua {lun['tg_pt_gp']}: {lun['alua_state']}"
                    n = node(label, "#fff3c4", p)
                    luns[(fab["name"], t["wwn"], tpg["name"], lun["name"])] = n
                    if lun["device"]:
                        exports.append((n, lun["device"]))
                for acl in tpg["acls"]:
                    a = node(f"acl {acl['name']}\n{acl['sessions']} session(s)", "#f8d7da", p)
                    for m in acl["mapped_luns"]:
                        ro = " (read-only)" if m["read_only"] else ""
                        mn = node(f"mapped lun_{m['mapped_lun']}{ro}", "#fff3c4", a)
                        maps.append((mn, (fab["name"], t["wwn"], tpg["name"], m["lun"])))
    devs: dict[str, str] = {}
    if model["backstores"]:
        b = node("backstores (target/core)", "#c8e6c9", root)
        for hba in model["backstores"]:
            h = node(f"{hba['name']} ({hba['plugin']})", parent=b)
            for d in hba["devices"]:
                where = " ".join(x for x in (d["storage"], _size(d["size"])) if x)
                state = "enabled" if d["configured"] else "not enabled"
                dn = node(f"{d['name']} [{state}]" + (f"\n{where}" if where else ""),
                          "#dcedc8", h)
                devs[f"{hba['name']}/{d['name']}"] = dn
                for gp in d["tg_pt_gps"]:
                    node(f"alua {gp['name']} (id {gp['id']})\n{gp['state_name']}",
                         "#e1d5f5", dn)
                if d["lu_gp"]:
                    node(f"lu_gp {d['lu_gp']}", "#e1d5f5", dn)
                pr = d["pr"]
                if pr["registrations"]:
                    head = (f"PR {pr['type_name']}\nholder {pr['holder']}" if pr["holder"]
                            else "PR: registered, no reservation")
                    pn = node(head, HIGHLIGHT, dn)
                    for r in pr["registrations"]:
                        node(f"{'holder ' if r['holder'] else ''}{r['initiator']}\n"
                             f"key {r['key']}", "#fffde7", pn)
    for src, dev in exports:
        if dev in devs:
            out.append(f"  {src} -> {devs[dev]} [style=dashed color=\"#2e7d32\" "
                       f"label=\"exports\" constraint=false];")
    for src, key in maps:
        if key in luns:
            out.append(f"  {src} -> {luns[key]} [style=dashed color=\"#c62828\" "
                       f"label=\"maps to\" constraint=false];")
    return out


PR_NODES = [("none", "No registrations"), ("registered", "Registered\\n(no reservation)"),
            ("reserved", "Reserved")]
PR_EDGES = [("none", "registered", "REGISTER (key)"),
            ("registered", "registered", "REGISTER (another I_T nexus)"),
            ("registered", "none", "REGISTER key 0 (last) / CLEAR"),
            ("registered", "reserved", "RESERVE (type)"),
            ("reserved", "registered", "RELEASE / holder unregisters"),
            ("reserved", "reserved", "PREEMPT (holder's key): new holder"),
            ("reserved", "none", "CLEAR")]


def _pr_labels(model: dict) -> dict[str, str]:
    pr = model["pr"]
    labels = dict(PR_NODES)
    n = len(pr["registrations"])
    if pr["state"] == "registered":
        labels["registered"] += f"\\n{n} registration(s)"
    if pr["state"] == "reserved":
        labels["reserved"] += f"\\n{pr['type_name']}\\nholder {pr['holder']}\\n" \
                              f"key {pr['holder_key']}; {n} registration(s)"
    return labels


def _pr_dot(model: dict) -> list[str]:
    pr = model["pr"]
    labels = _pr_labels(model)
    title = f"{model['device']}: persistent reservation (generation 0x{pr['generation']:x})"
    out = [f"  label={_q(title)};", "  labelloc=t;"]
    for key, _ in PR_NODES:
        fill = HIGHLIGHT if key == pr["state"] else "#eef3fb"
        pen = "3" if key == pr["state"] else "1"
        out.append(f"  {key} [label=\"{labels[key]}\" shape=ellipse fillcolor={_q(fill)} "
                   f"penwidth={pen}];")
    for a, b, label in PR_EDGES:
        out.append(f"  {a} -> {b} [label={_q(label)}];")
    return out


def _alua_current(model: dict) -> dict[int, list[str]]:
    cur: dict[int, list[str]] = {}
    for gp in model["groups"]:
        cur.setdefault(gp["state"], []).append(f"{gp['name']} (id {gp['id']})")
    return cur


def _alua_dot(model: dict) -> list[str]:
    cur = _alua_current(model)
    supported = 0
    for gp in model["groups"]:
        supported |= gp["supported"]
    out = [f"  label={_q(model['device'] + ': ALUA access states (highlighted: current)')};",
           "  labelloc=t; layout=circo;"]
    for state, name in ALUA_STATES:
        who = cur.get(state, [])
        label = name + ("\\n" + "\\n".join(who) if who else "")
        if who:
            style = f'fillcolor="{HIGHLIGHT}" penwidth=3'
        elif supported and not supported & ALUA_SUPPORT_BITS[state]:
            style = 'fillcolor="#eeeeee" fontcolor="#999999" style="rounded,filled,dashed"'
        else:
            style = 'fillcolor="#eef3fb"'
        out.append(f"  s{state:x} [label=\"{label}\" shape=ellipse {style}];")
    for state, _ in ALUA_STATES:
        if state == 0xF:
            continue
        out.append(f"  s{state:x} -> sf [label=\"STPG / alua_access_state\" fontsize=8];")
        out.append(f"  sf -> s{state:x} [label=\"trans_delay done\" fontsize=8 style=dashed];")
    return out


# -- the built-in SVG writer (no graphviz) ------------------------------------------------------
def _text(x: float, y: float, s: str, size: int = 12, anchor: str = "start",
          weight: str = "normal") -> str:
    return (f'<text x="{x:.0f}" y="{y:.0f}" font-family="Helvetica,Arial,sans-serif" '
            f'font-size="{size}" text-anchor="{anchor}" font-weight="{weight}">'
            f"{html.escape(s)}</text>")


def builtin_svg(model: dict) -> str:
    kind = model.get("kind")
    if kind == "topology":
        title, children = outline(model)
        rows: list[tuple[int, str]] = []

        def walk(nodes: list, depth: int) -> None:
            for label, kids in nodes:
                rows.append((depth, label))
                walk(kids, depth + 1)
        walk(children, 0)
        h, indent = 26, 22
        width = max([len(label) * 7 + d * indent + 40 for d, label in rows] + [400])
        parts = [_text(10, 20, title, 14, weight="bold")]
        for i, (d, label) in enumerate(rows):
            y = 40 + i * h
            x = 10 + d * indent
            w = len(label) * 7 + 16
            parts.append(f'<rect x="{x}" y="{y}" width="{w}" height="{h - 6}" rx="5" '
                         f'fill="#eef3fb" stroke="#555"/>')
            parts.append(_text(x + 8, y + 15, label, 12))
            if d:
                parts.append(f'<path d="M{x - indent + 8},{y - 6} V{y + 10} H{x}" '
                             f'fill="none" stroke="#888"/>')
        height = 50 + len(rows) * h
        return _svg(width, height, parts)
    # state machines on a circle
    if kind == "pr":
        labels = _pr_labels(model)
        nodes = [(k, labels[k].replace("\\n", " | "), k == model["pr"]["state"])
                 for k, _ in PR_NODES]
        edges = [(a, b, label) for a, b, label in PR_EDGES]
        title = f"{model['device']}: persistent reservation"
    else:
        cur = _alua_current(model)
        nodes = [(f"{s:x}", name + (": " + ", ".join(cur[s]) if s in cur else ""), s in cur)
                 for s, name in ALUA_STATES]
        edges = [(f"{s:x}", "f", "") for s, _ in ALUA_STATES if s != 0xF]
        title = f"{model['device']}: ALUA access states"
    n = len(nodes)
    cx, cy, r = 420, 300, 220
    pos = {}
    for i, (key, _, _) in enumerate(nodes):
        a = 2 * math.pi * i / n - math.pi / 2
        pos[key] = (cx + r * math.cos(a), cy + r * math.sin(a))
    parts = [_text(10, 24, title, 15, weight="bold"),
             '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="8" '
             'markerHeight="8" orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="#555"/>'
             '</marker></defs>']
    for a, b, label in edges:
        (x1, y1), (x2, y2) = pos[a], pos[b]
        if a == b:
            parts.append(f'<path d="M{x1 - 20:.0f},{y1 - 22:.0f} C{x1 - 50:.0f},{y1 - 90:.0f} '
                         f'{x1 + 50:.0f},{y1 - 90:.0f} {x1 + 20:.0f},{y1 - 22:.0f}" '
                         f'fill="none" stroke="#555" marker-end="url(#arrow)"/>')
            parts.append(_text(x1, y1 - 75, label, 10, "middle"))
            continue
        parts.append(f'<line x1="{x1:.0f}" y1="{y1:.0f}" x2="{x2:.0f}" y2="{y2:.0f}" '
                     f'stroke="#555" marker-end="url(#arrow)"/>')
        if label:
            parts.append(_text((x1 + x2) / 2, (y1 + y2) / 2 - 4, label, 10, "middle"))
    for key, label, hot in nodes:
        x, y = pos[key]
        w = max(120, len(label) * 6.5 + 20)
        fill = HIGHLIGHT if hot else "#eef3fb"
        parts.append(f'<ellipse cx="{x:.0f}" cy="{y:.0f}" rx="{w / 2:.0f}" ry="22" '
                     f'fill="{fill}" stroke="#333" stroke-width="{3 if hot else 1}"/>')
        parts.append(_text(x, y + 4, label, 11, "middle"))
    return _svg(cx * 2, cy * 2 + 40, parts)


def _svg(width: float, height: float, parts: list[str]) -> str:
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n'
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" '
            f'height="{height:.0f}" viewBox="0 0 {width:.0f} {height:.0f}">\n'
            f'<rect width="100%" height="100%" fill="white"/>\n' + "\n".join(parts) + "\n</svg>\n")
