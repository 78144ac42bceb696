"""The kernel's text parsers, as target stores use them.

``kstrto*`` (lib/kstrtox.c), ``kstrtobool``, ``simple_strto*`` and the option
tokenizer of lib/parser.c (``match_token``), with the kernel's errno for each
failure. Inputs are the raw bytes of one write(2); C-string semantics apply (a
NUL ends the string).
"""

from __future__ import annotations

import errno
import re
from typing import Callable, Iterator, Optional

from simfs.configfs import ConfigfsError

U8_MAX = 0xFF
U16_MAX = 0xFFFF
U32_MAX = 0xFFFFFFFF
U64_MAX = 0xFFFFFFFFFFFFFFFF
INT_MAX = 0x7FFFFFFF
INT_MIN = -0x80000000
S64_MAX = 0x7FFFFFFFFFFFFFFF
S64_MIN = -0x8000000000000000


def cstr(buf: bytes | str) -> str:
    """The C string in a store buffer: up to the first NUL, bytes kept as code points."""
    if isinstance(buf, str):
        buf = buf.encode("latin-1", "replace")
    nul = buf.find(b"\0")
    if nul >= 0:
        buf = buf[:nul]
    return buf.decode("latin-1")


def strip_one_newline(s: str) -> str:
    return s[:-1] if s.endswith("\n") else s


def _digit(c: str) -> int:
    if "0" <= c <= "9":
        return ord(c) - 48
    lc = c.lower()
    if "a" <= lc <= "f":
        return ord(lc) - 87
    return 99


def _fixup_radix(s: str, base: int) -> tuple[str, int]:
    if base == 0:
        if s[:1] == "0":
            if s[1:2].lower() == "x" and len(s) > 2 and _digit(s[2]) < 16:
                return s[2:], 16
            return s, 8
        return s, 10
    if base == 16 and s[:1] == "0" and s[1:2].lower() == "x":
        return s[2:], 16
    return s, base


def _parse_u64(s: str, base: int) -> tuple[int, str]:
    """_parse_integer: the value and the unparsed rest; ERANGE past 64 bits."""
    s, base = _fixup_radix(s, base)
    value, i = 0, 0
    overflow = False
    while i < len(s):
        d = _digit(s[i])
        if d >= base:
            break
        value = value * base + d
        if value > U64_MAX:
            overflow = True
        i += 1
    if i == 0:
        raise ConfigfsError(errno.EINVAL)
    if overflow:
        raise ConfigfsError(errno.ERANGE)
    return value, s[i:]


# A plain decimal number (no sign, no radix prefix, no leading 0), with at most one newline:
# what nearly every store writes. int() gives the same value as the digit loop.
_PLAIN_DECIMAL = re.compile(r"[1-9][0-9]*\n?")


def kstrtoull(buf: bytes | str, base: int = 0) -> int:
    """kstrtoull: optional '+', digits, at most one trailing newline; EINVAL/ERANGE."""
    s = cstr(buf)
    if base in (0, 10) and _PLAIN_DECIMAL.fullmatch(s):
        value = int(s)
        if value > U64_MAX:
            raise ConfigfsError(errno.ERANGE)
        return value
    if s[:1] == "+":
        s = s[1:]
    value, rest = _parse_u64(s, base)
    if rest == "\n":
        rest = ""
    if rest:
        raise ConfigfsError(errno.EINVAL)
    return value


def kstrtoll(buf: bytes | str, base: int = 0) -> int:
    s = cstr(buf)
    if s[:1] == "-":
        value = kstrtoull(s[1:], base)
        if value > -S64_MIN:
            raise ConfigfsError(errno.ERANGE)
        return -value
    value = kstrtoull(s, base)
    if value > S64_MAX:
        raise ConfigfsError(errno.ERANGE)
    return value


def _unsigned(limit: int) -> Callable[..., int]:
    def parse(buf: bytes | str, base: int = 0) -> int:
        value = kstrtoull(buf, base)
        if value > limit:
            raise ConfigfsError(errno.ERANGE)
        return value
    return parse


def _signed(lo: int, hi: int) -> Callable[..., int]:
    def parse(buf: bytes | str, base: int = 0) -> int:
        value = kstrtoll(buf, base)
        if not lo <= value <= hi:
            raise ConfigfsError(errno.ERANGE)
        return value
    return parse


kstrtoul = kstrtoull  # unsigned long is 64-bit on the machines simfs models
kstrtou32 = kstrtouint = _unsigned(U32_MAX)
kstrtou16 = _unsigned(U16_MAX)
kstrtou8 = _unsigned(U8_MAX)
kstrtol = kstrtoll
kstrtoint = kstrtos32 = _signed(INT_MIN, INT_MAX)


def kstrtobool(buf: bytes | str) -> bool:
    """kstrtobool: looks only at the first one or two characters."""
    s = cstr(buf)
    c0 = s[:1]
    if c0 in ("y", "Y", "t", "T", "1"):
        return True
    if c0 in ("n", "N", "f", "F", "0"):
        return False
    if c0 in ("o", "O"):
        c1 = s[1:2]
        if c1 in ("n", "N"):
            return True
        if c1 in ("f", "F"):
            return False
    raise ConfigfsError(errno.EINVAL)


def simple_strtoull(s: str, base: int = 0) -> tuple[int, str]:
    """simple_strtoull: no errors; returns the value and what was not consumed."""
    t, base = _fixup_radix(s, base)
    value, i = 0, 0
    while i < len(t):
        d = _digit(t[i])
        if d >= base:
            break
        value = (value * base + d) & U64_MAX
        i += 1
    if i == 0:
        return 0, s
    return value, t[i:]


def simple_strtoll(s: str, base: int = 0) -> tuple[int, str]:
    if s[:1] == "-":
        value, rest = simple_strtoull(s[1:], base)
        if rest == s[1:]:
            return 0, s
        return -value, rest
    return simple_strtoull(s, base)


# -- lib/parser.c ---------------------------------------------------------------
class Token:
    """One pattern of a match table, e.g. ``Token("fd_dev_name", "fd_dev_name=%s")``."""

    __slots__ = ("key", "pattern", "_prefix", "_conv")

    def __init__(self, key: str, pattern: str):
        self.key = key
        self.pattern = pattern
        m = re.fullmatch(r"([^%]*)(%[sdux])?", pattern)
        if not m:
            raise ValueError(pattern)
        self._prefix = m.group(1)
        self._conv = (m.group(2) or "")[1:]

    def match(self, s: str) -> Optional[str]:
        """The argument text when ``s`` matches (match_one), else None."""
        if not s.startswith(self._prefix):
            return None
        rest = s[len(self._prefix):]
        if not self._conv:
            return "" if rest == "" else None
        if self._conv == "s":
            return rest if rest else None
        if self._conv == "d":
            _, tail = simple_strtoll(rest, 0)
        elif self._conv == "u":
            _, tail = simple_strtoull(rest, 0)
        else:
            _, tail = simple_strtoull(rest, 16)
        if tail == rest or tail:  # nothing consumed, or text left after the number
            return None
        return rest


def tokenize(buf: bytes | str, table: list[Token]) -> Iterator[tuple[Optional[str], str, str]]:
    """strsep on ',' and '\\n', then match_token: yields (key or None, arg, token text)."""
    s = cstr(buf)
    for piece in re.split(r"[,\n]", s):
        if not piece:
            continue
        for tok in table:
            arg = tok.match(piece)
            if arg is not None:
                yield tok.key, arg, piece
                break
        else:
            yield None, "", piece


def match_int(arg: str) -> int:
    """match_int: kstrtol base 0 of the argument, EINVAL/ERANGE like the kernel."""
    value = kstrtoll(arg, 0)
    if not INT_MIN <= value <= INT_MAX:
        raise ConfigfsError(errno.ERANGE)
    return value


def match_u64(arg: str) -> int:
    return kstrtoull(arg, 0)
