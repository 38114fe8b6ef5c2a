"""Names of the databases seamtest creates: prefixed, readable, unique, within 63 bytes.

PostgreSQL truncates identifiers to NAMEDATALEN - 1 = 63 bytes, silently, so two long
test ids could otherwise collide. Every name is ``<prefix><kind>_<slug>_<hash>``: the
slug makes it readable in ``psql -l``, the hash of the full input makes it unique, and
the whole is plain ASCII so it needs no quoting by a human typing it.
"""

from __future__ import annotations

import hashlib
import re

MAX_IDENTIFIER = 63
DEFAULT_PREFIX = "seamtest_"
_PREFIX_RE = re.compile(r"^[a-z][a-z0-9_]{0,23}$")


def check_prefix(prefix: str, origin: str = "seamtest_db_prefix") -> str:
    """Validate a database name prefix (lower-case letters, digits, underscores)."""
    if not _PREFIX_RE.match(prefix):
        from .errors import ConfigError

        raise ConfigError(
            f"{origin} = {prefix!r}: a prefix is 1-24 lower-case letters, digits or "
            "underscores, starting with a letter (for example 'seamtest_' or 'ci_shard3_')."
        )
    return prefix


def digest(text: str, length: int = 8) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:length]


def slug(text: str) -> str:
    """Lower-case ASCII letters, digits and single underscores."""
    return re.sub(r"_+", "_", re.sub(r"[^a-z0-9]", "_", text.lower())).strip("_")


def database_name(prefix: str, kind: str, label: str, *, unique: str | None = None) -> str:
    """``<prefix><kind>_<slug of label>_<hash>``, at most 63 bytes.

    ``unique`` (defaults to ``label``) is what the hash covers, so different inputs with
    the same slug still get different names.
    """
    tail = "_" + digest(unique if unique is not None else label)
    head = f"{prefix}{kind}_"
    room = MAX_IDENTIFIER - len(head) - len(tail)
    return head + slug(label)[:room].rstrip("_") + tail


def label_for_test(nodeid: str) -> str:
    """The readable part of a test id: the test name with its parameters, no file path."""
    return nodeid.rsplit("::", 1)[-1]
