"""A cached, initdb'd cluster, copied instead of re-running initdb.

initdb costs about 1 s here; copying its result costs about a tenth of that
(shared/MEASUREMENTS.md). The cache key covers the binaries and every initdb argument,
so a different PostgreSQL never reuses another's cluster. The copy is published by an
atomic rename, so concurrent runs at worst both build it and one wins.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from ._binaries import Binaries
from ._privilege import RunAs
from .errors import ServerError

#: Bump when what a prepared cluster contains changes.
CLUSTER_FORMAT = "2"
SUPERUSER = "seamtest"
#: C.UTF-8 keeps sorting deterministic and byte-wise while lower()/upper() know Unicode;
#: plain C is the fallback where the C library lacks it.
LOCALES = ("C.UTF-8", "C")

PG_HBA = """\
# Written by seamtest. The unix socket sits in a directory only the server's user (and
# root) can enter; TCP listens on 127.0.0.1 only and needs the run's random password.
local   all all                trust
host    all all 127.0.0.1/32   scram-sha-256
"""


def cache_dir() -> Path:
    """seamtest's user cache (``SEAMTEST_CACHE_DIR``, else ``$XDG_CACHE_HOME/seamtest``)."""
    explicit = os.environ.get("SEAMTEST_CACHE_DIR")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(xdg) / "seamtest"


def _initdb(binaries: Binaries, target: Path, run_as: RunAs | None) -> None:
    errors = []
    for locale in LOCALES:
        cmd = [
            str(binaries.initdb),
            "--pgdata",
            str(target),
            "--username",
            SUPERUSER,
            "--encoding",
            "UTF8",
            "--locale",
            locale,
            "--auth-local",
            "trust",
            "--auth-host",
            "scram-sha-256",
            "--no-sync",  # the cluster is a cache; a crash just means initdb again
            # 1 MiB WAL segments instead of 16: the copied cluster shrinks from 38 to 23 MiB.
            "--wal-segsize",
            "1",
            "--no-instructions",
        ]
        result = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
            user=run_as.uid if run_as else None,
            group=run_as.gid if run_as else None,
            extra_groups=[] if run_as else None,
            cwd=target.parent,
        )
        if result.returncode == 0:
            (target / "pg_hba.conf").write_text(PG_HBA)
            return
        errors.append(f"--locale {locale}: {result.stderr.strip() or result.stdout.strip()}")
        shutil.rmtree(target, ignore_errors=True)
    raise ServerError(
        f"initdb ({binaries.initdb}) failed:\n" + "\n".join(errors) + "\nThe binaries may be "
        "broken or incomplete; try another with seamtest_bin_dir."
    )


def cluster_key(binaries: Binaries) -> str:
    stamp = "|".join(
        [CLUSTER_FORMAT, str(binaries.bin_dir), binaries.version, SUPERUSER, ",".join(LOCALES)]
    )
    return hashlib.sha256(stamp.encode()).hexdigest()[:16]


def copy_tree(source: Path, target: Path) -> None:
    """Copy a directory tree, preserving modes; ``cp -a`` is ~40% faster than copytree."""
    cp = shutil.which("cp")
    if cp is not None and sys.platform.startswith("linux"):
        result = subprocess.run(
            [cp, "-a", "--", str(source), str(target)], capture_output=True, text=True, check=False
        )
        if result.returncode == 0:
            return
        shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(source, target, symlinks=True)


def prepared_cluster(binaries: Binaries, run_as: RunAs | None, scratch: Path) -> tuple[Path, bool]:
    """Return the cached cluster for ``binaries`` (building it first if needed).

    ``scratch`` is a directory ``run_as`` may write to (initdb runs there). The second
    value says whether this call built the cluster.
    """
    root = cache_dir() / "clusters"
    dest = root / cluster_key(binaries)
    if (dest / "PG_VERSION").exists():
        return dest, False
    root.mkdir(parents=True, exist_ok=True)
    target = scratch / "initdb"
    target.mkdir(mode=0o700)
    if run_as:
        os.chown(target, run_as.uid, run_as.gid)
    _initdb(binaries, target, run_as)
    staging = Path(tempfile.mkdtemp(prefix="building-", dir=root))
    try:
        shutil.copytree(target, staging / "data", symlinks=True)
        os.rename(staging / "data", dest)
    except OSError:
        if not (dest / "PG_VERSION").exists():
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        shutil.rmtree(target, ignore_errors=True)
    return dest, True
