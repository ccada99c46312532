"""``openapi.yaml`` is what the code generates now (``make openapi`` rewrites it)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_openapi_yaml_is_up_to_date(tmp_path):
    generated = tmp_path / "openapi.yaml"
    result = subprocess.run(
        [sys.executable, "manage.py", "spectacular", "--file", str(generated), "--validate"],
        cwd=ROOT,
        # Exactly what `make openapi` runs: integer bounds follow the database backend, so the
        # schema is always generated on the default one, whatever this test run uses.
        env={**os.environ, "DJANGO_DEBUG": "1", "DATABASE_URL": ""},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    committed = (ROOT / "openapi.yaml").read_text(encoding="utf-8")
    assert generated.read_text(encoding="utf-8") == committed, (
        "openapi.yaml differs from what the code generates: run `make openapi` and commit it"
    )
