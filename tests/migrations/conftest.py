"""The migrations suite: fastapi_project/ is test data for inner sessions, not tests."""

from __future__ import annotations

collect_ignore = ["fastapi_project"]
