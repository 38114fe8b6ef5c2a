"""Clone-method probes remembered across runs.

A template's probe (``Provisioner.probe_clone``) clones it once per method and drops the
clones: about 0.2 s, more than everything else a warm start does. The embedded server of
each run is a copy of the same cached cluster, so its answer does not change from run to
run: it is kept in the user's cache, keyed by the cluster (PostgreSQL's system
identifier, the same in every copy), the server version and the template. A different
cluster, version or migration probes afresh; ``--seamtest-rebuild`` does too.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

#: Probes kept in the file; the oldest go first.
KEEP = 50


class ProbeCache:
    """A JSON file of probe results: ``{key: {"clone": method, "probe_ms": {...}}}``."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def _read(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):  # none yet, or damaged: probe again
            return {}
        return data if isinstance(data, dict) else {}

    def get(self, key: str) -> dict[str, Any] | None:
        entry = self._read().get(key)
        if isinstance(entry, dict) and isinstance(entry.get("clone"), str):
            return entry
        return None

    def put(self, key: str, entry: dict[str, Any]) -> None:
        """Add ``entry`` (atomically: concurrent workers each leave a whole file)."""
        data = self._read()
        data.pop(key, None)
        data[key] = entry
        kept = dict(list(data.items())[-KEEP:])
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".probes-")
        except OSError:  # a read-only cache costs a probe next time, nothing more
            return
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(kept, f, indent=1)
            os.replace(tmp, self.path)
        except OSError:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
