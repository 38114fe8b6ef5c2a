"""Running PostgreSQL when pytest runs as root, as CI containers do.

PostgreSQL refuses to run as root, so seamtest runs ``initdb`` and ``postgres`` as an
unprivileged user (``postgres`` where it exists, else ``nobody``; ini
``seamtest_server_user`` chooses another). That user may not be able to read the binaries
(a virtualenv under ``/root`` or a pyenv Python is mode 0700): then the install is copied,
once, into a root-owned, world-readable cache. No permission on a user's directory is ever
widened.
"""

from __future__ import annotations

import grp
import hashlib
import os
import pwd
import shutil
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ._binaries import Binaries
from .errors import ConfigError, ServerError


@dataclass(frozen=True)
class RunAs:
    """The unprivileged account the server runs as."""

    name: str
    uid: int
    gid: int

    def chown_tree(self, root: Path) -> None:
        os.chown(root, self.uid, self.gid)
        for dirpath, dirnames, filenames in os.walk(root):
            for name in dirnames + filenames:
                os.lchown(os.path.join(dirpath, name), self.uid, self.gid)


def choose_run_as(name: str | None) -> RunAs | None:
    """The account to run the server as, or None when we are not root."""
    if os.geteuid() != 0:
        return None
    for candidate in [name] if name else ["postgres", "nobody"]:
        try:
            entry = pwd.getpwnam(candidate)
        except KeyError:
            continue
        if entry.pw_uid == 0:
            raise ConfigError(
                f"seamtest_server_user = {candidate!r} is root; PostgreSQL refuses to run as "
                "root. Name an unprivileged account."
            )
        return RunAs(entry.pw_name, entry.pw_uid, entry.pw_gid)
    raise ConfigError(
        f"pytest runs as root and no unprivileged account ({name or 'postgres, nobody'}) "
        "exists to run PostgreSQL as. Create one, set seamtest_server_user, or run pytest "
        "as a normal user."
    )


def _groups_of(run_as: RunAs) -> set[int]:
    return {run_as.gid} | {g.gr_gid for g in grp.getgrall() if run_as.name in g.gr_mem}


def can_reach(path: Path, run_as: RunAs, *, bit: int) -> bool:
    """Whether ``run_as`` can traverse to ``path`` and has ``bit`` (R_OK/X_OK) on it."""
    groups = _groups_of(run_as)

    def allowed(st: os.stat_result, want: int) -> bool:
        if st.st_uid == run_as.uid:
            return bool(st.st_mode & (want << 6))
        if st.st_gid in groups:
            return bool(st.st_mode & (want << 3))
        return bool(st.st_mode & want)

    resolved = path.resolve()
    for parent in reversed(resolved.parents):
        if not allowed(parent.stat(), os.X_OK):
            return False
    return allowed(resolved.stat(), bit)


def shared_root() -> Path:
    """A root-owned directory other users may read but not write, for copied binaries."""
    root = Path(tempfile.gettempdir()) / f"seamtest-shared-{os.geteuid()}"
    root.mkdir(mode=0o755, exist_ok=True)
    st = root.lstat()
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o022:
        raise ServerError(
            f"{root} exists but is not a directory owned by uid {os.geteuid()} and closed to "
            "writes by others; seamtest will not put server binaries there. Remove it."
        )
    return root


def reachable_binaries(binaries: Binaries, run_as: RunAs | None) -> Binaries:
    """Binaries ``run_as`` can execute: the originals, or a cached copy of the install."""
    if run_as is None:
        return binaries
    if can_reach(binaries.postgres, run_as, bit=os.X_OK) and can_reach(
        binaries.initdb, run_as, bit=os.X_OK
    ):
        return binaries
    roots = binaries.copy_roots or (binaries.bin_dir.parent,)
    base = Path(os.path.commonpath([str(r.parent) for r in roots]))
    stamp = f"{binaries.bin_dir}|{binaries.postgres.stat().st_mtime_ns}|{binaries.version}"
    key = hashlib.sha256(stamp.encode()).hexdigest()[:16]
    dest = shared_root() / f"bin-{key}"
    if not dest.exists():
        staging = Path(tempfile.mkdtemp(prefix=f"bin-{key}-", dir=dest.parent))
        try:
            for root in roots:
                shutil.copytree(
                    root,
                    staging / root.relative_to(base),
                    symlinks=True,
                    ignore=shutil.ignore_patterns("include", "doc", "*.a"),
                )
            staging.chmod(0o755)
            for dirpath, _dirs, _files in os.walk(staging):
                os.chmod(dirpath, 0o755)
            os.rename(staging, dest)  # atomic publish; a concurrent winner is fine too
        except OSError:
            shutil.rmtree(staging, ignore_errors=True)
            if not dest.exists():
                raise
    return Binaries(
        dest / binaries.bin_dir.relative_to(base),
        f"{binaries.source}, copied to {dest} because {run_as.name} cannot read {binaries.bin_dir}",
        (),
    )
