"""``simfs run`` interrupted: SIGTERM, SIGHUP and SIGINT all stop it the same clean way.

The command gets the signal and ``--grace`` seconds to finish; then the daemon and the
private bus stop, the mount goes, and what the command wrote under /etc and /var is kept.
"""
from __future__ import annotations

import os
import random
import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Optional

import pytest

# Writes numbered files under /etc/target/w, noting each one in $LOG (on the host) only
# once the write is done; the short sleep keeps the number of files small.
WRITER = ('mkdir -p /etc/target/w && i=0 && while :; do i=$((i+1)); '
          'echo "$i" > /etc/target/w/$i && echo "$i" >> "$LOG"; sleep 0.02; done')
# Notes which signal it got (in /etc, so in the state dir), then exits 3.
TRAPPER = ('for s in TERM HUP INT; do trap "echo $s > /etc/target/got; exit 3" $s; done; '
           'mkdir -p /etc/target && echo up > "$LOG" && sleep 60 & wait')


def live_processes_naming(text: str) -> list[str]:
    """Processes whose command line contains ``text`` (a zombie's is empty: it has exited)."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmd:
            found.append(f"{pid}: {cmd}")
    return found


def mounts_naming(text: str) -> list[str]:
    """Mount table lines naming ``text``, in the mount namespace of any process."""
    seen = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/mountinfo") as f:
                seen += [line for line in f if text in line]
        except OSError:
            continue
    return seen


def start(sdir: Path, log: Path, script: str, *extra: str, ignore: tuple = (),
          env: Optional[dict] = None) -> subprocess.Popen:
    """``simfs run`` in a session of its own (so its process group can be signalled), with
    the stop signals as a shell leaves them (a test runner started in the background may
    have SIGINT ignored, which would be inherited), except those in ``ignore``."""
    dispositions = ["--default-signal=INT,TERM,HUP"]
    if ignore:
        dispositions.append("--ignore-signal=" + ",".join(s.name[3:] for s in ignore))
    return subprocess.Popen(["env", *dispositions, "simfs", "run", *extra, "--state-dir",
                             str(sdir), "--", "sh", "-c", script],
                            env=dict(os.environ, LOG=str(log), **(env or {})),
                            start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(path: Path, timeout: float = 60) -> None:
    """Until ``path`` exists."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


def test_timeout_term_keeps_etc_and_leaves_nothing(tmp_path):
    """The issue's reproduction: ``timeout -s TERM`` signals the run's whole group."""
    sdir = tmp_path / "D"
    r = subprocess.run(["timeout", "-s", "TERM", "8", "simfs", "run", "--state-dir", str(sdir),
                        "--", "sh", "-c", "mkdir -p /etc/target; echo x > /etc/target/marker; "
                        "sleep 60"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 124, r.stderr  # timeout's own status: it had to signal
    assert (sdir / "etc/target/marker").read_text() == "x\n"
    assert live_processes_naming(str(sdir)) == []
    assert mounts_naming(str(sdir)) == []


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT],
                         ids=lambda s: s.name)
def test_the_command_gets_the_signal_once_and_its_status_is_returned(tmp_path, sig):
    sdir, log = tmp_path / "D", tmp_path / "up"
    proc = start(sdir, log, TRAPPER)
    wait_for(log)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 3, err  # the trap's exit status
    assert (sdir / "etc/target/got").read_text() == f"{sig.name[3:]}\n"  # one trap ran
    assert live_processes_naming(str(sdir)) == []


# Python's SIGINT handler raises KeyboardInterrupt where Python code runs; in a finalizer
# (importlib runs weakref callbacks after every import) Python swallows it. This stand-in,
# loaded into the chosen simfs process as sitecustomize, spends a second and a half in one
# finalizer while that process starts: it touches $STARTING, the test sends SIGINT then.
SLOW_FINALIZER = """
import os, sys, time
argv = open("/proc/self/cmdline", "rb").read().split(b"\\0")


class _Slow:
    def __del__(self):
        open(os.environ["STARTING"], "w").close()
        time.sleep(1.5)


def _on_import(event, args):  # the outer simfs run: while it reads its command line
    if event == "import" and args[0] == "simfs.cli.run" and not _on_import.done:
        _on_import.done = True
        _Slow()


_on_import.done = False
if os.environ["WHICH"] == "inner" and b"simfs.cli.run" in argv:
    _Slow()
elif os.environ["WHICH"] == "outer" and argv[1:2] == [b"run"] or argv[2:3] == [b"run"]:
    sys.addaudithook(_on_import)
"""


@pytest.mark.parametrize("which", ["outer", "inner"])
def test_a_sigint_while_simfs_run_starts_is_not_lost(tmp_path, which):
    """A SIGINT to the group while ``simfs run`` (outer) or the process it starts in the
    namespace (inner) is still starting stops the run, even when it lands in a finalizer:
    the outer notes SIGINT from its first line on, and the inner starts with the stop
    signals blocked until its handlers are in."""
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(SLOW_FINALIZER)
    starting = tmp_path / "starting"
    proc = start(tmp_path / "D", tmp_path / "log", WRITER, "--grace", "2",
                 env={"PYTHONPATH": str(hook), "STARTING": str(starting), "WHICH": which})
    wait_for(starting)
    time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGINT)
    try:
        _, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        _, err = proc.communicate()
        pytest.fail(f"the SIGINT was lost:\n{err}")
    assert proc.returncode == 128 + signal.SIGINT or proc.returncode == -signal.SIGINT, err
    assert live_processes_naming(str(tmp_path / "D")) == []


def test_the_command_and_the_daemon_start_with_no_signal_blocked(tmp_path):
    """The stop signals the inner process starts with blocked are unblocked before anything
    else starts: the command (and so the daemon, started the same way) blocks nothing."""
    r = subprocess.run(["simfs", "run", "--state-dir", str(tmp_path / "D"), "--", "sh", "-c",
                        "grep SigBlk /proc/self/status"], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["SigBlk:", "0000000000000000"]


def test_nohup_keeps_sighup_ignored_for_the_command(tmp_path):
    """Started with SIGHUP ignored (nohup), a run and its command go on through a hangup."""
    sdir, log = tmp_path / "D", tmp_path / "up"
    proc = start(sdir, log, TRAPPER.replace("for s in TERM HUP INT", "for s in TERM INT"),
                 ignore=(signal.SIGHUP,))
    wait_for(log)
    os.killpg(proc.pid, signal.SIGHUP)
    with pytest.raises(subprocess.TimeoutExpired):
        proc.wait(timeout=2)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 3, err
    assert (sdir / "etc/target/got").read_text() == "TERM\n"


def test_a_command_that_ignores_the_signal_is_killed_after_the_grace(tmp_path):
    sdir, log = tmp_path / "D", tmp_path / "up"
    proc = start(sdir, log, 'trap "" TERM; echo kept > /etc/k; echo up > "$LOG"; sleep 60',
                 "--grace", "1")
    wait_for(log)
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGKILL
    assert time.monotonic() - t0 < 30  # 1 s of grace, then cleanup: far below sleep's 60 s
    assert (sdir / "etc/k").read_text() == "kept\n"
    assert live_processes_naming(str(sdir)) == []


def test_killing_simfs_run_with_sigkill_still_cleans_up(tmp_path):
    """SIGKILL cannot be caught: the process inside the namespace hears of it from the
    kernel (its parent died) and stops the command the same way."""
    sdir, log = tmp_path / "D", tmp_path / "up"
    proc = start(sdir, log, TRAPPER)
    wait_for(log)
    proc.kill()
    proc.wait(timeout=10)
    wait_for(sdir / "etc/target/got")
    deadline = time.monotonic() + 30
    while live_processes_naming(str(sdir)):
        assert time.monotonic() < deadline, live_processes_naming(str(sdir))
        time.sleep(0.1)
    assert (sdir / "etc/target/got").read_text() == "TERM\n"


def test_background_jobs_of_the_command_do_not_outlive_the_run(tmp_path):
    sdir = tmp_path / "D"
    job = f'sh -c "sleep 300; : {sdir}"'  # a job whose command line names the run
    r = subprocess.run(["simfs", "run", "--state-dir", str(sdir), "--", "sh", "-c",
                        f"{job} & sleep 0.5; exit 0"], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    assert live_processes_naming(str(sdir)) == []


def test_unprivileged_run_stops_cleanly_on_sigterm(unprivileged, tmp_path):
    """As an ordinary user (user + mount namespace) too."""
    import shutil
    sdir = Path(unprivileged.home) / "sig-run"
    log = Path(unprivileged.home) / "sig-run.up"
    shutil.rmtree(sdir, ignore_errors=True)
    log.unlink(missing_ok=True)
    proc = subprocess.Popen(
        ["runuser", "-u", unprivileged.user, "--", "env", f"HOME={unprivileged.home}",
         f"LOG={log}", unprivileged.python, "-m", "simfs", "run", "--state-dir", str(sdir),
         "--", "sh", "-c", TRAPPER], cwd="/", stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, start_new_session=True)
    wait_for(log)
    os.killpg(proc.pid, signal.SIGTERM)  # runuser and all: what a CI runner's cancel does
    _, err = proc.communicate(timeout=60)
    assert (sdir / "etc/target/got").read_text() == "TERM\n", err
    assert live_processes_naming(str(sdir)) == []


def interrupted_run(base: Path, n: int, sig: signal.Signals, writing: bool, delay: float,
                    group: bool) -> int:
    """One run of the writer, stopped by ``sig``; returns how many writes it completed
    (all of them checked in the state directory)."""
    sdir, log = base / f"s{n}", base / f"log{n}"
    proc = start(sdir, log, WRITER, "--grace", "2")
    if writing:  # how long setting up takes depends on the machine's load
        wait_for(log, timeout=120)
    time.sleep(delay)
    if group:
        os.killpg(proc.pid, sig)
    else:
        proc.send_signal(sig)
    moment = "the first write" if writing else "start"
    what = f"run {n} ({sig.name} to {'group' if group else 'pid'} {delay:.2f} s after {moment})"
    try:
        _, err = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        tree = subprocess.run(["ps", "-eo", "pid,ppid,pgid,stat,wchan:20,args"],
                              capture_output=True, text=True).stdout
        os.killpg(proc.pid, signal.SIGKILL)
        _, err = proc.communicate()  # "Exception ignored in ..." would name a lost signal
        pytest.fail(f"{what} did not end:\n{tree}\n{err}")
    assert proc.returncode != 0, f"{what} reported success"
    left = live_processes_naming(str(sdir))
    assert not left, f"{what} left {left}\n{err}"
    done = log.read_text().split("\n")[:-1] if log.exists() else []  # complete lines only
    for i in done:
        kept = sdir / "etc/target/w" / i
        assert kept.exists() and kept.read_text() == f"{i}\n", f"{what} lost write {i}"
    return len(done)


@pytest.mark.timeout(900)
def test_100_runs_interrupted_at_random_moments(tmp_path):
    """100 runs stopped at random moments (setting up, running, any time) by SIGTERM, SIGINT
    or SIGHUP, sent to ``simfs run`` or to its whole process group: no process and no mount
    of a run remains, and every write the command completed is in the state directory.
    Four run at a time (most of a run is waiting)."""
    rng = random.Random(int(os.environ.get("SIMFS_SIGNAL_SEED", "18")))
    base = tmp_path / "runs"
    base.mkdir()
    plans = []
    for n in range(100):
        writing = rng.random() < 0.6  # else any moment from the start, setup included
        plans.append((base, n, rng.choice([signal.SIGTERM, signal.SIGINT, signal.SIGHUP]),
                      writing, rng.uniform(0.0, 0.6 if writing else 1.2), rng.random() < 0.5))
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=4) as pool:
        writes = list(pool.map(lambda plan: interrupted_run(*plan), plans))
    assert mounts_naming(str(base)) == []
    stats = {"writes": sum(writes), "stopped_before_the_first_write": writes.count(0),
             "signals": {s.name: sum(p[2] == s for p in plans) for s in set(p[2] for p in plans)}}
    # both kinds of moment happened: before the command wrote anything, and while it wrote
    assert stats["writes"] > 100 and stats["stopped_before_the_first_write"] > 5, stats
    print(f"100 interrupted runs in {time.monotonic() - started:.0f} s: {stats}")
