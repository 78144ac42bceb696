"""tcmu-runner's D-Bus service, ``org.kernel.TCMUService1``, for the handlers simfs has.

targetcli lists ``user:<subtype>`` backstores by asking this service (an ObjectManager at
``/org/kernel/TCMUService1``, one object per handler at ``/org/kernel/TCMUService1/<subtype>``
with the ``ConfigDesc`` property) and checks a cfgstring with ``CheckConfig(s) -> (b, s)``
before it creates a device; ``changemedium`` calls ``ChangeMedium(s name, t size, s cfg) ->
(i, s)``. ``simfs run`` starts this service on its private system bus
(``python -m simfs.daemon.tcmu_dbus``, bus from DBUS_SYSTEM_BUS_ADDRESS).

Written with PyGObject's Gio (Debian's python3-gi, which targetcli-fb itself needs): the same
GDBus that tcmu-runner serves and targetcli calls with, so both ends agree on the wire.
"""

from __future__ import annotations

import argparse
import errno
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Optional

if TYPE_CHECKING:
    from simfs_plugins.handlers import Handler

BUS_NAME = "org.kernel.TCMUService1"
ROOT = "/org/kernel/TCMUService1"
IFACE = "org.kernel.TCMUService1"
MANAGER_IFACE = "org.kernel.TCMUService1.HandlerManager1"
OM_IFACE = "org.freedesktop.DBus.ObjectManager"

XML = f"""<node>
  <interface name="{IFACE}">
    <property name="ConfigDesc" type="s" access="read"/>
    <method name="CheckConfig">
      <arg type="s" name="configstr" direction="in"/>
      <arg type="b" name="is_valid" direction="out"/>
      <arg type="s" name="message" direction="out"/>
    </method>
    <method name="ChangeMedium">
      <arg type="s" name="name" direction="in"/>
      <arg type="t" name="size" direction="in"/>
      <arg type="s" name="configstr" direction="in"/>
      <arg type="i" name="ret" direction="out"/>
      <arg type="s" name="message" direction="out"/>
    </method>
  </interface>
  <interface name="{MANAGER_IFACE}">
    <method name="RegisterHandler">
      <arg type="s" name="subtype" direction="in"/>
      <arg type="s" name="cfgstr_desc" direction="in"/>
      <arg type="b" name="succeeded" direction="out"/>
      <arg type="s" name="message" direction="out"/>
    </method>
  </interface>
  <interface name="{OM_IFACE}">
    <method name="GetManagedObjects">
      <arg type="a{{oa{{sa{{sv}}}}}}" name="objects" direction="out"/>
    </method>
  </interface>
</node>"""

#: interfaces GDBus adds to every exported object (ObjectManager answers list them too)
_STANDARD = ("org.freedesktop.DBus.Properties", "org.freedesktop.DBus.Introspectable",
             "org.freedesktop.DBus.Peer")


def check_config(handler: "Handler", cfgstring: str) -> tuple[bool, str]:
    """CheckConfig's answer: (True, "success") or (False, why)."""
    try:
        reason = handler.check_config(cfgstring)
    except Exception as e:  # noqa: BLE001 - a broken handler must not take the bus down
        return False, f"{type(e).__name__}: {e}"
    return (True, "success") if reason is None else (False, reason or "unknown")


def change_medium(configfs: Path, handler: "Handler", name: str, size: int,
                  cfgstring: str) -> tuple[int, str]:
    """ChangeMedium: point the enabled ``user`` device NAME of this handler at another
    cfgstring and size, through its attrib/dev_config and attrib/dev_size (the runner's
    reconfig path); (0, "success") or (-errno, why)."""
    ok, why = check_config(handler, cfgstring)
    if not ok:
        return -errno.EINVAL, why
    matches = sorted((configfs / "target" / "core").glob(f"user_*/{name}"))
    if not matches:
        return -errno.ENODEV, f"no user backstore named {name}"
    dev = matches[0]
    try:
        for attr, value in (("dev_size", str(size)), ("dev_config", cfgstring)):
            with open(dev / "attrib" / attr, "w") as f:
                f.write(value)
    except OSError as e:
        return -(e.errno or errno.EIO), os.strerror(e.errno or errno.EIO)
    return 0, "success"


def serve(address: str, configfs: Path, ready=None) -> int:
    """Own BUS_NAME on the bus at ``address`` and answer until SIGTERM/SIGINT."""
    from gi.repository import Gio, GLib

    from simfs_plugins.handlers import discover_handlers  # only where the service runs
    handlers = discover_handlers()
    node = Gio.DBusNodeInfo.new_for_xml(XML)
    flags = (Gio.DBusConnectionFlags.AUTHENTICATION_CLIENT
             | Gio.DBusConnectionFlags.MESSAGE_BUS_CONNECTION)
    conn = Gio.DBusConnection.new_for_address_sync(address, flags, None, None)

    def managed_objects():
        out = {}
        for subtype, h in handlers.items():
            ifaces = {i: {} for i in _STANDARD}
            ifaces[IFACE] = {"ConfigDesc": GLib.Variant("s", h.cfg_desc)}
            out[f"{ROOT}/{subtype}"] = ifaces
        return out

    def on_call(_conn, _sender, path, iface, method, params, inv):
        if iface == OM_IFACE:
            inv.return_value(GLib.Variant("(a{oa{sa{sv}}})", (managed_objects(),)))
        elif iface == MANAGER_IFACE:
            inv.return_value(GLib.Variant("(bs)", (False, "simfs serves handlers installed "
                                                   "as simfs.handlers plugins only")))
        elif method == "CheckConfig":
            (cfg,) = params.unpack()
            inv.return_value(GLib.Variant("(bs)", check_config(handlers[_subtype(path)], cfg)))
        elif method == "ChangeMedium":
            name, size, cfg = params.unpack()
            inv.return_value(GLib.Variant("(is)", change_medium(
                configfs, handlers[_subtype(path)], name, size, cfg)))

    def on_get(_conn, _sender, path, _iface, prop):
        return GLib.Variant("s", handlers[_subtype(path)].cfg_desc)

    conn.register_object(ROOT, node.lookup_interface(OM_IFACE), on_call, None, None)
    conn.register_object(f"{ROOT}/HandlerManager1", node.lookup_interface(MANAGER_IFACE),
                         on_call, None, None)
    for subtype in handlers:
        conn.register_object(f"{ROOT}/{subtype}", node.lookup_interface(IFACE), on_call,
                             on_get, None)
    reply = conn.call_sync("org.freedesktop.DBus", "/org/freedesktop/DBus",
                           "org.freedesktop.DBus", "RequestName",
                           GLib.Variant("(su)", (BUS_NAME, 4)),  # DO_NOT_QUEUE
                           GLib.VariantType("(u)"), Gio.DBusCallFlags.NONE, -1, None)
    if reply.unpack()[0] != 1:  # PRIMARY_OWNER: someone else (a real tcmu-runner) has it
        print(f"simfs tcmu service: {BUS_NAME} is taken", file=sys.stderr)
        return 1
    loop = GLib.MainLoop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, sig, loop.quit)
    if ready is not None:
        ready.write("ready\n")
        ready.flush()
    loop.run()
    conn.flush_sync(None)
    return 0


def _subtype(path: str) -> str:
    return path.rsplit("/", 1)[1]


def start(env: dict, configfs: str = "/sys/kernel/config",
          timeout: float = 20.0) -> Optional[subprocess.Popen]:
    """Start the service for the bus named in ``env`` and wait until it owns its name.
    None when it cannot run here: quietly without a bus or without PyGObject in simfs's
    environment (a wheel in a bare venv; docs/handlers.md says so), with a warning when
    it should have started and did not."""
    import importlib.util
    if not env.get("DBUS_SYSTEM_BUS_ADDRESS") or importlib.util.find_spec("gi") is None:
        return None
    proc = subprocess.Popen([sys.executable, "-m", "simfs.daemon.tcmu_dbus", "--configfs",
                             configfs], env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, text=True)
    line = ""
    try:
        import select
        if select.select([proc.stdout], [], [], timeout)[0]:
            line = proc.stdout.readline()
    finally:
        proc.stdout.close()
    if line.strip() != "ready":
        stop(proc)
        print("simfs run: tcmu-runner's D-Bus service did not start; targetcli will list no "
              "user: backstores", file=sys.stderr)
        return None
    return proc


def stop(proc: Optional[subprocess.Popen]) -> None:
    if proc is None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m simfs.daemon.tcmu_dbus",
                                description="serve org.kernel.TCMUService1 for simfs's "
                                            "user: handlers")
    p.add_argument("--address", default=os.environ.get("DBUS_SYSTEM_BUS_ADDRESS", ""),
                   help="bus address (default: $DBUS_SYSTEM_BUS_ADDRESS)")
    p.add_argument("--configfs", default="/sys/kernel/config",
                   help="where the simfs tree is mounted (for ChangeMedium)")
    a = p.parse_args(argv)
    if not a.address:
        print("no bus address: set DBUS_SYSTEM_BUS_ADDRESS or --address", file=sys.stderr)
        return 2
    return serve(a.address, Path(a.configfs), ready=sys.stdout)


if __name__ == "__main__":
    sys.exit(main())
