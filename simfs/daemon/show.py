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

import shutil
import subprocess
from typing import Any

from simfs.core.t10 import spc as t10
from simfs.scsi import state as scsi_state
from simfs.daemon import show_svg

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
        if what == "access":
            return {"kind": "access", "device": _dev_name(dev), "pr": _pr(dev),
                    "nexuses": _nexuses(dev)}
        if what == "paths":
            return {"kind": "paths", "device": _dev_name(dev), "groups": _tg_pt_gps(dev),
                    "nexuses": _nexuses(dev),
                    "serial": getattr(dev.wwn, "unit_serial", "") or ""}
        return {"error": f"unknown show {what!r} (topology, pr, alua, access, paths)"}


def _device(core: Any, name: str) -> Any:
    hba_name, _, dev_name = name.strip("/").partition("/")
    hba = core.hbas.get(hba_name)
    return hba.devices.get(dev_name) if hba is not None else None


def _dev_name(dev: Any) -> str:
    return f"{dev.hba.name}/{dev.name}"


def _nexuses(dev: Any) -> list[dict]:
    """The I_T nexuses that have sent the device a command, with the target port each
    came through (the engine's record of who gets its unit attentions)."""
    out = []
    for nx in list(scsi_state.of(dev).nexuses.values()):
        try:
            port = nx.port.member_path()
        except Exception:  # noqa: BLE001 - a port without a path
            port = "?"
        out.append({"initiator": nx.initiator, "isid": nx.isid, "port": port})
    return sorted(out, key=lambda n: (n["initiator"], n["isid"] or "", n["port"]))


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
                    # get_blocks() is the last LBA, as the kernel's backends answer it
                    size = (dev.bdev.get_blocks() + 1) * dev.attrib.block_size
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


def mapped_label(m: dict) -> str:
    """A mapped LUN, the same in the text, the built-in SVG and graphviz's."""
    return f"mapped lun_{m['mapped_lun']} -> {m['lun']}{' (read-only)' if m['read_only'] else ''}"


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
                    maps = [(mapped_label(m), []) for m in acl["mapped_luns"]]
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
    if kind == "access":
        pr = model["pr"]
        res = (f"{pr['type_name']} (type {pr['type']})" if pr["holder"] else "no reservation")
        lines = [f"{model['device']}: {res}, generation 0x{pr['generation']:x}"]
        for w in who_may(model):
            lines.append(f"  {w['name']}: {w['role']}; {show_svg.access_label(w)}")
        return "\n".join(lines) + "\n"
    if kind == "paths":
        lines = [f"{model['device']}: paths"]
        for gp in model["groups"]:
            lines.append(f"  {gp['name']} (id {gp['id']}): {gp['state_name']}")
            for port in gp["members"]:
                users = [n["initiator"] for n in model["nexuses"] if n["port"] == port]
                lines.append(f"    {port}" + (f" <- {', '.join(users)}" if users else ""))
        return "\n".join(lines) + "\n"
    if kind == "sequence":
        lines = [f"{model['device'] or 'all devices'}: {len(model['steps'])} command(s)"]
        for s in model["steps"]:
            lines.append(f"  {s['initiator']} -> {s['command']} = {s['answer']}")
        return "\n".join(lines) + "\n"
    if kind == "alua":
        lines = [f"{model['device']}: ALUA target port groups"]
        for gp in model["groups"]:
            lines.append(f"  {gp['name']} (id {gp['id']}): {gp['state_name']}; members: "
                         f"{', '.join(gp['members']) or 'none'}")
        return "\n".join(lines) + "\n"
    return str(model) + "\n"


# == who may read and write (SPC-4 "Persistent reservations type codes") ======================
#: per type: who may read, who may write ("all", "registrants", "holder")
PR_ACCESS = {1: ("all", "holder"), 3: ("holder", "holder"), 5: ("all", "registrants"),
             6: ("registrants", "registrants"), 7: ("all", "registrants"),
             8: ("registrants", "registrants")}


def who_may(model: dict) -> list[dict]:
    """Each initiator of an ``access`` model (registrants, then the others that reached the
    LU): its role and whether the reservation lets it read and write."""
    pr = model["pr"]
    out: list[dict] = []
    seen = set()
    holder_type = pr["type"] if pr["holder"] else 0
    all_holders = holder_type in (7, 8)
    for r in pr["registrations"]:
        name = r["initiator"] + (f",i,0x{r['isid']}" if r["isid"] else "")
        if name in seen:
            continue
        seen.add(name)
        holder = r["holder"] or (all_holders and pr["holder"] is not None)
        out.append({"name": name, "key": r["key"], "registered": True, "holder": holder})
    for n in model.get("nexuses", []):
        name = n["initiator"] + (f",i,0x{n['isid']}" if n["isid"] else "")
        if name not in seen:
            seen.add(name)
            out.append({"name": name, "key": None, "registered": False, "holder": False})
    for w in out:
        read_who, write_who = PR_ACCESS.get(holder_type, ("all", "all"))

        def allowed(who: str, w: dict = w) -> bool:
            return (who == "all" or (who == "registrants" and w["registered"])
                    or (who == "holder" and w["holder"]))
        w["read"], w["write"] = allowed(read_who), allowed(write_who)
        w["role"] = ("holder" if w["holder"] else "registered" if w["registered"]
                     else "not registered") + (f", key {w['key']}" if w["key"] else "")
        w["lines"] = [w["name"], w["role"]]
    return out


def sequence_model(events: list[dict], device: str | None = None) -> dict:
    """The SCSI commands of a trace (``simfs trace --json``, ``SIMFS_TRACE_LOG``) as the
    steps of a sequence picture: who sent what, and the answer."""
    steps = []
    for ev in events:
        if ev.get("op") != "scsi" or (device and ev.get("device") != device):
            continue
        ans = str(ev.get("result", "?")).replace("_", " ")
        if ev.get("sense_text"):
            ans += f" {ev['sense_text']}"
        steps.append({"initiator": ev.get("initiator", "?"), "command": ev.get("opname", "?"),
                      "answer": ans, "good": ev.get("result") == "GOOD",
                      "device": ev.get("device")})
    return {"kind": "sequence", "device": device, "steps": steps}


# == SVG ======================================================================================
#: pictures graphviz draws when it is installed; the others are always drawn here
DOT_KINDS = ("topology", "pr", "alua")


def write_svg(model: dict, path: str, renderer: str = "auto") -> str:
    """Draw ``model`` into ``path``; returns how ("graphviz dot" or "built-in").
    ``renderer``: "auto" (dot when installed), "dot" or "builtin"."""
    svg, how = None, "built-in"
    use_dot = renderer == "dot" or (renderer == "auto" and shutil.which("dot"))
    if use_dot and model.get("kind") in DOT_KINDS:
        try:
            svg = subprocess.run(["dot", "-Tsvg"], input=to_dot(model).encode(),
                                 capture_output=True, check=True, timeout=60).stdout.decode()
            how = "graphviz dot"
        except (OSError, subprocess.SubprocessError):
            if renderer == "dot":
                raise
            svg = None
    if svg is None:
        svg = builtin_svg(model)
    with open(path, "w") as f:
        f.write(svg)
    return how


def _q(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


HIGHLIGHT = show_svg.HIGHLIGHT


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
                        mn = node(mapped_label(m), "#fff3c4", a)
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


#: every change of state passes through Transitioning: what starts one, what ends it
ALUA_EDGE_LABELS = ("STPG / alua_access_state", "trans_delay_msecs done")


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
        out.append(f"  s{state:x} -> sf [label={_q(ALUA_EDGE_LABELS[0])} fontsize=8];")
        out.append(f"  sf -> s{state:x} [label={_q(ALUA_EDGE_LABELS[1])} fontsize=8 "
                   "style=dashed];")
    return out


# -- the built-in SVG writer (no graphviz): simfs.daemon.show_svg -------------------------------
def builtin_svg(model: dict) -> str:
    kind = model.get("kind")
    if kind == "topology":
        return show_svg.topology(*outline(model))
    if kind == "pr":
        labels = _pr_labels(model)
        nodes = [(k, labels[k].split("\\n"), HIGHLIGHT if k == model["pr"]["state"]
                  else show_svg.PLAIN) for k, _ in PR_NODES]
        title = (f"{model['device']}: persistent reservation "
                 f"(generation 0x{model['pr']['generation']:x})")
        return show_svg.row_machine(title, nodes, PR_EDGES)
    if kind == "alua":
        cur = _alua_current(model)
        supported = 0
        for gp in model["groups"]:
            supported |= gp["supported"]
        spokes = []
        for state, name in ALUA_STATES:
            if state == 0xF:
                continue
            dim = bool(supported) and not supported & ALUA_SUPPORT_BITS[state]
            fill = HIGHLIGHT if state in cur else ("#eeeeee" if dim else show_svg.PLAIN)
            spokes.append(([name, *cur.get(state, [])], fill, dim and state not in cur))
        hub = (["Transitioning", *cur.get(0xF, [])], HIGHLIGHT if 0xF in cur else show_svg.PLAIN)
        return show_svg.star_machine(
            f"{model['device']}: ALUA access states (highlighted: current)", hub, spokes,
            ALUA_EDGE_LABELS[0], ALUA_EDGE_LABELS[1])
    if kind == "access":
        pr = model["pr"]
        res = [pr["type_name"], f"holder {pr['holder']}"] if pr["holder"] else ["no reservation"]
        return show_svg.access(f"{model['device']}: who may read and write",
                               [model["device"], *res, f"generation 0x{pr['generation']:x}"],
                               who_may(model))
    if kind == "paths":
        groups = [{"lines": [f"{gp['name']} (id {gp['id']})", gp["state_name"]],
                   "state": gp["state"], "ports": gp["members"]} for gp in model["groups"]
                  if gp["members"]]
        hosts = sorted({n["initiator"] for n in model["nexuses"]})
        used = {(n["initiator"], n["port"]) for n in model["nexuses"]}
        lu = [model["device"]] + ([f"serial {model['serial']}"] if model.get("serial") else [])
        return show_svg.paths(f"{model['device']}: paths from the host to the LU", hosts,
                              groups, lu, used)
    if kind == "sequence":
        actors: list[str] = []
        for s in model["steps"]:
            if s["initiator"] not in actors:
                actors.append(s["initiator"])
        devs = sorted({s["device"] for s in model["steps"] if s["device"]})
        target = model["device"] or (devs[0] if len(devs) == 1 else "the LU")
        steps = [(s["initiator"], s["command"], s["answer"], not s["good"])
                 for s in model["steps"]]
        return show_svg.sequence(f"{target}: the SCSI commands, in order", actors, target,
                                 steps)
    return show_svg.Canvas().svg()
