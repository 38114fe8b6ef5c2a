"""Loading the plugin stays cheap: pytest loads it in every run of every project where
seamtest is installed, most of which never ask for a database."""

from __future__ import annotations

import subprocess
import sys


def test_loading_the_plugin_imports_no_database_driver() -> None:
    code = (
        "import sys, seamtest.plugin\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('psycopg', 'psycopg_binary', 'redis', 'httpx', 'sqlalchemy', 'testcontainers'))\n"
        "print(heavy)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == "[]"
