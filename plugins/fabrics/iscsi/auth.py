"""CHAP credentials (iscsi_node_auth) and the files that set them: ``discovery_auth/``,
TPG ``auth/`` (demo mode) and ACL ``auth/``."""

from __future__ import annotations

import errno
from typing import Callable

from simfs.configfs import Attribute, ConfigfsError, Group
from simfs.core import kparse
from simfs.core.fabric import FabricModule, obj

from simfs_plugins.fabrics.iscsi.constants import (AUTH_BUF, NAF_PASSWORD_IN_SET,
                                                   NAF_PASSWORD_SET, NAF_USERID_IN_SET,
                                                   NAF_USERID_SET)
from simfs_plugins.fabrics.iscsi.params import update_param


class NodeAuth:
    """iscsi_node_auth: CHAP credentials of an ACL, of a TPG (demo mode), of discovery."""

    def __init__(self) -> None:
        self.userid = ""
        self.password = ""
        self.userid_mutual = ""
        self.password_mutual = ""
        self.naf_flags = 0
        self.authenticate_target = 0
        self.enforce_discovery_auth = 0

    def as_dict(self, enforce: bool) -> dict:
        return dict(enforce=bool(enforce), userid=self.userid, password=self.password,
                    userid_mutual=self.userid_mutual, password_mutual=self.password_mutual,
                    authenticate_target=bool(self.authenticate_target))


_AUTH_FLAGS = {"userid": NAF_USERID_SET, "password": NAF_PASSWORD_SET,
               "userid_mutual": NAF_USERID_IN_SET, "password_mutual": NAF_PASSWORD_IN_SET}


def auth_attrs(get_auth: Callable[[Group], NodeAuth], check_len: bool) -> tuple:
    """userid, password, authenticate_target, userid_mutual, password_mutual."""
    def str_attr(name: str) -> Attribute:
        flag = _AUTH_FLAGS[name]

        def show(g: Group) -> str:
            return f"{getattr(get_auth(g), name)}\n"

        def store(g: Group, buf: bytes) -> None:
            auth = get_auth(g)
            if check_len and len(buf) >= AUTH_BUF:
                raise ConfigfsError(errno.EINVAL, None)
            value = kparse.cstr(buf)[:AUTH_BUF - 1]
            setattr(auth, name, value)
            if value.startswith("NULL"):
                auth.naf_flags &= ~flag
            else:
                auth.naf_flags |= flag
            both = NAF_USERID_IN_SET | NAF_PASSWORD_IN_SET
            auth.authenticate_target = 1 if auth.naf_flags & both == both else 0
        return Attribute(name, show, store)

    return (str_attr("userid"), str_attr("password"),
            Attribute("authenticate_target", lambda g: f"{get_auth(g).authenticate_target}\n"),
            str_attr("userid_mutual"), str_attr("password_mutual"))


def _fmod_of(g: Group) -> FabricModule:
    return obj(g)


def _disc_auth(g: Group) -> NodeAuth:
    return _fmod_of(g).state["discovery_auth"]


def _show_enforce(g: Group) -> str:
    return f"{_disc_auth(g).enforce_discovery_auth}\n"


def _store_enforce(g: Group, buf: bytes) -> None:
    fmod = _fmod_of(g)
    try:
        op = kparse.kstrtou32(buf, 0)
    except ConfigfsError:
        raise ConfigfsError(errno.EINVAL, None) from None
    if op not in (0, 1):
        raise ConfigfsError(errno.EINVAL, f"Illegal value for enforce_discovery_auth: {op}")
    params = fmod.state["discovery_params"]
    auth = fmod.state["discovery_auth"]
    if op:
        update_param(fmod.log, params, "AuthMethod", "CHAP")
        fmod.state["discovery_authentication"] = 1
        auth.enforce_discovery_auth = 1
        fmod.log.debug("LIO-CORE[0] Successfully enabled authentication enforcement for iSCSI "
                       "Discovery TPG")
    else:
        update_param(fmod.log, params, "AuthMethod", "CHAP,None")
        fmod.state["discovery_authentication"] = 0
        auth.enforce_discovery_auth = 0
        fmod.log.debug("LIO-CORE[0] Successfully disabled authentication enforcement for iSCSI "
                       "Discovery TPG")


DISCOVERY_ATTRS = auth_attrs(_disc_auth, check_len=True) + (
    Attribute("enforce_discovery_auth", _show_enforce, _store_enforce),)
