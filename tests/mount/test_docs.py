"""Docs as tests: every command block in README.md and docs/*.md runs as written, in
order, on a fresh machine state, and what a block shows as output is what it prints.

Each fenced or indented block in a document is preceded by a marker comment that says
what it is (a block without one fails the test, so a new block cannot slip in untested):

    <!-- test: run -->          commands. A block whose lines start with ``$ `` is a
                                transcript: each ``$`` line is run and the lines after it
                                are its expected output (stdout and stderr). Other blocks
                                run line by line and each line must exit 0.
    <!-- test: python -->       Python code, run with the python simfs is installed in;
                                must exit 0, and each ``# {...}``-style comment after a
                                ``print(...)`` is what that line prints.
    <!-- test: log -->          lines the kernel-style log must hold, in this order
                                (``simfs dmesg`` of the document's mount).
    <!-- test: output FILE -->  the expected content of FILE, written by earlier commands.
    <!-- test: skip REASON -->  not run: a synopsis, a table of code, an interactive shell.
    <!-- test: instead CMD -->  not run; CMD stands in for it (the README's install, which
                                the test's own environment has done: CMD mounts instead).

A document runs in its own mount and PID namespace (tmpfs over /mnt, its own state
home), so its ``/mnt/configfs`` is fresh and everything it starts ends with it; its
working directory is an empty folder with an ``img/`` in it. Outputs are compared after
masking what differs from run to run: clock times, dmesg timestamps, pids, UUIDs, and
``...`` in an expected line matches anything.

The pictures a document draws (``simfs show ... --svg img/NAME.svg``) must say what the
committed ``docs/img/NAME.svg`` says (the same text, when drawn the same way);
``SIMFS_DOCS_UPDATE=1`` copies the new ones into docs/img.
"""
from __future__ import annotations

import os
import re
import select
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
MARK = re.compile(r"^<!--\s*test:\s*(run|python|log|output|skip|instead)\b\s*(.*?)\s*-->\s*$")
END = "__simfs_doctest_end__"


@dataclass
class Block:
    kind: str          # run | log | output | skip | None (unmarked)
    arg: str
    lines: list[str]
    lineno: int        # 1-based line of the block's first line
    fenced: bool = False


@dataclass
class Doc:
    path: Path
    blocks: list[Block] = field(default_factory=list)


def parse(path: Path) -> Doc:
    """The code blocks of a Markdown file with the marker comment before each."""
    doc = Doc(path)
    lines = path.read_text().splitlines()
    i, pending, prev_blank = 0, None, True
    while i < len(lines):
        line = lines[i]
        m = MARK.match(line.strip())
        if m:
            pending = (m.group(1), m.group(2))
            prev_blank = True
            i += 1
            continue
        if line.startswith("```"):
            start, body = i + 1, []
            i += 1
            while i < len(lines) and not lines[i].startswith("```"):
                body.append(lines[i])
                i += 1
            kind, arg = pending or (None, "")
            doc.blocks.append(Block(kind, arg, body, start + 1, fenced=True))
            pending, prev_blank = None, False
            i += 1
            continue
        if line.startswith("    ") and prev_blank:
            start, body = i, []
            while i < len(lines) and (lines[i].startswith("    ") or not lines[i].strip()):
                body.append(lines[i][4:])
                i += 1
            while body and not body[-1].strip():
                body.pop()
            kind, arg = pending or (None, "")
            doc.blocks.append(Block(kind, arg, body, start + 1))
            pending, prev_blank = None, True
            continue
        if line.strip():
            pending = None if not m else pending
        prev_blank = not line.strip()
        i += 1
    return doc


# -- masking -------------------------------------------------------------------------------
_MASKS = [
    (re.compile(r"\b\d\d:\d\d:\d\d\.\d{6}\b"), "HH:MM:SS.us"),
    (re.compile(r"^\[\s*\d+\.\d+\]\s?"), ""),
    (re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b"), "UUID"),
    (re.compile(r"\b\d+\((\S+?)\)"), r"PID(\1)"),
    (re.compile(r"^bash: line \d+: "), "bash: "),
    (re.compile(r"\bpid \d+"), "pid N"),
    (re.compile(r"\s+$"), ""),
    (re.compile(r"(?<=\S)\s{2,}"), " "),  # column padding that varies with a pid's width
]


def mask(line: str) -> str:
    for rx, rep in _MASKS:
        line = rx.sub(rep, line)
    return line


def matches(want: str, got: str) -> bool:
    """``want`` (masked) equals ``got`` (masked); ``...`` in ``want`` matches anything."""
    want, got = mask(want), mask(got)
    if "..." not in want:
        return want == got
    rx = ".*".join(re.escape(p) for p in want.split("..."))
    return re.fullmatch(rx, got) is not None


def same_lines(want: list[str], got: list[str]) -> bool:
    return len(want) == len(got) and all(matches(w, g) for w, g in zip(want, got))


# -- the shell -----------------------------------------------------------------------------
class Shell:
    """One bash for a whole document, in private mount, PID and network namespaces."""

    def __init__(self, home: Path, cwd: Path):
        env = dict(os.environ, HOME=str(home), XDG_STATE_HOME=str(home / "state"),
                   TERM="dumb", LC_ALL="C.UTF-8")
        self.p = subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private", "--pid", "--fork", "--net",
             "--mount-proc", "--kill-child", "bash", "--norc", "--noprofile"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            env=env, cwd=str(cwd), text=True)
        self._buf = ""
        # a network of its own (iSCSI portals on 127.0.0.1:3260 meet nobody else's);
        # SIGPIPE ignored as libiscsi's tools want
        self.run("exec 2>&1; trap '' PIPE; ip link set lo up; mount -t tmpfs simfs-docs /mnt")

    def run(self, cmd: str, timeout: float = 300) -> tuple[int, list[str]]:
        """Run ``cmd``; (exit status, output lines)."""
        assert self.p.stdin and self.p.stdout
        # stdin is the terminal a user would have; here nothing, so no command eats the
        # commands that follow it
        self.p.stdin.write(f"{{ {cmd}\n}} </dev/null\n__rc=$?; echo; echo {END} $__rc\n")
        self.p.stdin.flush()
        out: list[str] = []
        deadline = time.monotonic() + timeout
        fd = self.p.stdout.fileno()
        while True:
            while "\n" not in self._buf:
                left = deadline - time.monotonic()
                if left <= 0 or not select.select([fd], [], [], left)[0]:
                    raise AssertionError(f"timeout running {cmd!r}; output so far {out}")
                chunk = os.read(fd, 65536)
                if not chunk:
                    raise AssertionError(f"the shell ended running {cmd!r}: {out}")
                self._buf += chunk.decode("utf-8", "replace")
            line, self._buf = self._buf.split("\n", 1)
            if line.startswith(END):
                if out and out[-1] == "":
                    out.pop()
                elif out and out[-1].endswith(""):  # no final newline: echo ended the line
                    pass
                return int(line.split()[1]), out
            out.append(line)

    def close(self) -> None:
        if self.p.poll() is None:
            try:
                self.run("simfs umount /mnt/configfs >/dev/null 2>&1; "
                         "simfs umount /mnt/cfg >/dev/null 2>&1; true", timeout=60)
                assert self.p.stdin
                self.p.stdin.close()
                self.p.wait(timeout=30)
            except Exception:  # noqa: BLE001 - the PID namespace ends what is left
                self.p.kill()
                self.p.wait()


def commands(lines: list[str]) -> list[tuple[str, list[str]]]:
    """A transcript's (command, expected output) pairs; ``\\`` continues a command."""
    out: list[tuple[str, list[str]]] = []
    cont = False
    for line in lines:
        if cont:
            out[-1] = (out[-1][0] + "\n" + line, out[-1][1])
            cont = line.endswith("\\")
        elif line.startswith("$ "):
            out.append((line[2:], []))
            cont = line.endswith("\\")
        elif out:
            out[-1][1].append(line)
    return out


def logical_lines(lines: list[str]) -> list[str]:
    """A plain block's commands: joined ``\\`` continuations, no blank lines."""
    out: list[str] = []
    cont = False
    for line in lines:
        if cont:
            out[-1] += "\n" + line
        elif line.strip():
            out.append(line)
        cont = line.endswith("\\")
    return out


def run_doc(doc: Doc, home: Path, cwd: Path) -> list[str]:
    """Run a document's blocks in order; the list of failures (empty: it runs as written)."""
    failures: list[str] = []
    sh = Shell(home, cwd)
    try:
        for b in doc.blocks:
            where = f"{doc.path.name}:{b.lineno}"
            if b.kind in ("skip", None):
                continue
            if b.kind == "instead":
                rc, got = sh.run(b.arg)
                if rc != 0:
                    failures.append(f"{where}: instead {b.arg!r} exited {rc}: {got}")
            if b.kind == "run":
                if any(x.startswith("$ ") for x in b.lines):
                    for cmd, want in commands(b.lines):
                        _, got = sh.run(cmd)
                        if not same_lines(want, got):
                            failures.append(f"{where}: $ {cmd}\n  want {want}\n  got  {got}")
                else:
                    for cmd in logical_lines(b.lines):
                        rc, got = sh.run(cmd)
                        if rc != 0:
                            failures.append(f"{where}: {cmd!r} exited {rc}: {got}")
            elif b.kind == "python":
                code = "\n".join(b.lines)
                rc, got = sh.run(f"{sys.executable} - <<'__SIMFS_DOC_PY__'\n{code}\n"
                                 "__SIMFS_DOC_PY__")
                want = [m.group(1) for m in re.finditer(r"print\(.*\)\s*#\s*(.*)", code)]
                if rc != 0 or (want and not same_lines(want, got)):
                    failures.append(f"{where}: python exited {rc}\n  want {want}\n  got {got}")
            elif b.kind == "log":
                mp = b.arg or "/mnt/configfs"
                _, log = sh.run(f"simfs dmesg {mp}")
                pos = 0
                for want in b.lines:
                    for k in range(pos, len(log)):
                        if matches(want, log[k]):
                            pos = k + 1
                            break
                    else:
                        failures.append(f"{where}: log line not found (in order): {want}")
            elif b.kind == "output":
                _, got = sh.run(f"cat {b.arg}")
                if not same_lines(b.lines, got):
                    failures.append(f"{where}: {b.arg}\n  want {b.lines}\n  got  {got}")
            if failures:
                break  # later blocks depend on this one; one clear failure is enough
    finally:
        sh.close()
    return failures


def _docs() -> list[Path]:
    return [p for p in DOCS if p.exists()]


def _id(p: Path) -> str:
    return str(p.relative_to(ROOT))


@pytest.mark.parametrize("path", _docs(), ids=_id)
def test_every_block_is_marked(path):
    """Each block says whether it runs; a new block cannot slip in untested."""
    doc = parse(path)
    unmarked = [f"{_id(path)}:{b.lineno}: {b.lines[:1]}" for b in doc.blocks if b.kind is None]
    assert not unmarked, "blocks without a <!-- test: ... --> marker:\n" + "\n".join(unmarked)


def _svg_text(svg: Path) -> tuple[str, list[str]]:
    """(how it was drawn, its visible text in order)."""
    import html
    src = svg.read_text()
    how = "dot" if "Generated by graphviz" in src else "builtin"
    return how, [mask(html.unescape(t)) for t in re.findall(r"<text[^>]*>([^<]*)</text>", src)]


@pytest.mark.skipif(shutil.which("unshare") is None, reason="unshare(1) needed")
@pytest.mark.parametrize("path", _docs(), ids=_id)
def test_document_runs_as_written(path, tmp_path):
    doc = parse(path)
    if not any(b.kind in ("run", "python", "log", "output", "instead") for b in doc.blocks):
        pytest.skip("no runnable block")
    # a short home: simfs run's D-Bus socket lives in its state directory, and a Unix
    # socket path has at most 107 bytes
    home = Path(tempfile.mkdtemp(prefix="simfs-doc-"))
    work = tmp_path / "work"
    (work / "img").mkdir(parents=True)
    try:
        failures = run_doc(doc, home, work)
    finally:
        shutil.rmtree(home, ignore_errors=True)
    assert not failures, "\n".join(failures)
    for svg in sorted((work / "img").glob("*.svg")):
        committed = ROOT / "docs" / "img" / svg.name
        if os.environ.get("SIMFS_DOCS_UPDATE"):
            shutil.copyfile(svg, committed)
            continue
        assert committed.exists(), f"{path.name} draws img/{svg.name}: commit it to docs/img"
        how, text = _svg_text(svg)
        was, before = _svg_text(committed)
        if how == was:
            assert text == before, f"docs/img/{svg.name} is stale (SIMFS_DOCS_UPDATE=1 redraws)"


def test_a_drifted_document_fails(tmp_path):
    """The harness catches drift: a wrong output, a failing command, a missing log line,
    an unmarked block; and it masks only what varies."""
    doc = tmp_path / "drift.md"
    doc.write_text("""# drift

<!-- test: run -->
    $ echo hello
    goodbye

<!-- test: run -->
    false

<!-- test: run -->
    $ echo '12:00:00.123456 4242(bash) [    1.5] x'
    09:30:00.000001 7(bash) [    1.5] x

A paragraph, then a block nobody marked:

    unmarked
""")
    parsed = parse(doc)
    assert [b.kind for b in parsed.blocks] == ["run", "run", "run", None]
    failures = run_doc(parsed, tmp_path, tmp_path)
    assert len(failures) == 1 and "goodbye" in failures[0]  # the first stops the run
    parsed.blocks = parsed.blocks[1:]
    failures = run_doc(parsed, tmp_path, tmp_path)
    assert len(failures) == 1 and "'false' exited 1" in failures[0]
    parsed.blocks = parsed.blocks[1:]
    assert run_doc(parsed, tmp_path, tmp_path) == []
    assert matches("a ... c", "a bbb c") and not matches("a ... c", "a bbb d")
