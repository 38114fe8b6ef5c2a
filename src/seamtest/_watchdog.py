"""Never orphaned: a tiny process that stops the server when the pytest run is gone.

``python -m seamtest._watchdog OWNER_PID POSTMASTER_PID RUNTIME_DIR`` waits (on a pidfd,
so without polling) until the owning pytest process exits, however it exits (SIGKILL
included). If the server still runs then, the watchdog stops it (immediate shutdown, then
SIGKILL) and removes the runtime directory; after a clean run it finds nothing to do.
It runs in its own session, so Ctrl-C in the terminal reaches pytest
but not the watchdog or the server.

Other services (Redis, a user's own process) use the same watchdog with two options before
the positional arguments: ``--pid-file PATH`` names the file whose first line must still be
the pid (PostgreSQL's ``data/postmaster.pid`` by default), and ``--signal N`` stops the
service's whole process group with signal N, then SIGKILL, instead of a postmaster's
immediate shutdown.
"""

from __future__ import annotations

import contextlib
import os
import select
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

#: A file in the runtime directory that asks the watchdog to leave the data in place.
KEEP_MARKER = "KEEP"


def alive(pid: int) -> bool:
    """Whether ``pid`` runs. A zombie counts as gone: ours is reaped here, and another's
    (a server started by an xdist worker that has exited) may wait seconds for an init
    that reaps slowly, as some container inits do."""
    with contextlib.suppress(ChildProcessError):
        done, _status = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            # "pid (comm) state ...": the state follows the last ')'.
            return stat.read().rpartition(b")")[2].split()[0] != b"Z"
    except FileNotFoundError:
        return False
    except OSError:  # no /proc (not Linux): ask the kernel
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def wait_gone(pid: int, timeout: float) -> bool:
    """Wait until ``pid`` has exited; False if it still runs after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    delay = 0.002
    while alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(delay)
        delay = min(delay * 2, 0.05)
    return True


def stop_postmaster(pid: int, *, fast: bool = False, timeout: float = 10.0) -> None:
    """Stop a postmaster: fast (checkpoint-free, restartable) or immediate, then SIGKILL."""
    # SIGINT = fast shutdown, SIGQUIT = immediate shutdown (PostgreSQL's signal contract).
    try:
        os.kill(pid, signal.SIGINT if fast else signal.SIGQUIT)
    except ProcessLookupError:
        return
    if not wait_gone(pid, timeout):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        wait_gone(pid, 5.0)


def stop_group(pid: int, sig: int = signal.SIGTERM, *, timeout: float = 10.0) -> None:
    """Stop a service started in its own session: ``sig`` to its process group, then SIGKILL."""
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        return
    if not wait_gone(pid, timeout):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
        wait_gone(pid, 5.0)


def wait_for_exit(owner: int) -> None:
    """Block until process ``owner`` has exited (a pidfd where there is one, else polling)."""
    _wait_for_exit(owner)


def _wait_for_exit(owner: int) -> None:
    try:
        fd = os.pidfd_open(owner)
    except (AttributeError, OSError):  # no pidfd (old kernel, not Linux): poll
        while alive(owner):
            time.sleep(0.5)
        return
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    poller.poll()


def _still_ours(postmaster: int, runtime_dir: Path, pid_file: Path | None = None) -> bool:
    """Whether ``postmaster`` is still the server of ``runtime_dir`` (not a reused pid).

    ``pid_file`` (default: PostgreSQL's ``data/postmaster.pid``) holds the pid on its first
    line.
    """
    path = pid_file if pid_file is not None else runtime_dir / "data" / "postmaster.pid"
    try:
        first_line = path.read_text().split("\n", 1)[0]
    except OSError:
        return False
    return first_line.strip() == str(postmaster)


def spawn(
    owner: int,
    postmaster: int,
    runtime_dir: Path,
    *extra_dirs: Path,
    pid_file: Path | None = None,
    stop_signal: int | None = None,
) -> None:
    """Start a watchdog for ``postmaster`` on behalf of ``owner``.

    ``extra_dirs`` are removed too when the owner dies (the run's bookkeeping directory).
    For a service other than PostgreSQL, ``pid_file`` names the file holding its pid and
    ``stop_signal`` the signal that stops its process group.
    """
    options: list[str] = []
    if pid_file is not None:
        options += ["--pid-file", str(pid_file)]
    if stop_signal is not None:
        options += ["--signal", str(int(stop_signal))]
    args = [*options, str(owner), str(postmaster), str(runtime_dir), *map(str, extra_dirs)]
    # The watchdog detaches (it forks and its first process exits at once), so we reap
    # that first process now: no zombie, and no Popen left to warn "still running".
    # Run as a plain script (stdlib only): importing the seamtest package would cost
    # ~0.2 s of start-up for nothing; -I -S keeps the interpreter start to ~15 ms.
    subprocess.run(
        [sys.executable, "-I", "-S", __file__, *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        close_fds=True,
        check=True,
        timeout=60,
    )


def main(argv: list[str]) -> int:
    if os.fork() > 0:  # detach: spawn() reaps this first process, the child watches on
        os._exit(0)
    argv = list(argv)
    pid_file: Path | None = None
    stop_signal: int | None = None
    while argv and argv[0] in ("--pid-file", "--signal"):
        option, value = argv[0], argv[1]
        del argv[:2]
        if option == "--pid-file":
            pid_file = Path(value)
        else:
            stop_signal = int(value)
    owner, postmaster, runtime_dir = int(argv[0]), int(argv[1]), Path(argv[2])
    extra_dirs = [Path(arg) for arg in argv[3:]]
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _wait_for_exit(owner)
    if _still_ours(postmaster, runtime_dir, pid_file):
        if stop_signal is None:
            stop_postmaster(postmaster)
        else:
            stop_group(postmaster, stop_signal)
    if not (runtime_dir / KEEP_MARKER).exists():
        shutil.rmtree(runtime_dir, ignore_errors=True)
    for path in extra_dirs:
        shutil.rmtree(path, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
