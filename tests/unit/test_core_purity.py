"""services.core is pure: it pulls in no framework or network client, and opens no sockets."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import services.core

CORE = Path(services.core.__file__).parent
FRAMEWORKS = ("fastapi", "starlette", "uvicorn", "redis", "aiokafka", "boto3", "botocore",
              "prometheus_client", "httpx")
IO_MODULES = {"socket", "asyncio", "selectors", "ssl", "subprocess", "http", "urllib.request",
              "threading", "time", "os"}


def test_importing_core_loads_no_framework_or_client() -> None:
    modules = ", ".join(f"services.core.{p.stem}" for p in sorted(CORE.glob("*.py"))
                        if p.stem != "__init__")
    code = (f"import sys\nimport {modules}\n"
            f"print(','.join(m for m in {FRAMEWORKS!r} if m in sys.modules))\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)
    assert result.stdout.strip() == "", f"services.core imported: {result.stdout.strip()}"


def test_core_modules_import_no_io_or_clock() -> None:
    """Not even the standard library's sockets, event loop or clock: time is passed in."""
    offenders = []
    for path in CORE.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            offenders += [f"{path.name}: {n}" for n in names
                          if n in IO_MODULES or n.split(".")[0] in IO_MODULES - {"http"}]
    assert offenders == []
