"""services.core is pure: importing it pulls in no framework, network client or server code."""

from __future__ import annotations

import subprocess
import sys

FORBIDDEN = ("fastapi", "starlette", "uvicorn", "redis", "aiokafka", "boto3", "botocore",
             "asyncio", "socket", "prometheus_client")


def test_importing_core_loads_no_io_modules() -> None:
    code = (
        "import sys\n"
        "import services.core.bencode, services.core.http, services.core.udp, "
        "services.core.model, services.core.connection_id, services.core.errors, "
        "services.core.events, services.core.hlc, services.core.merge\n"
        f"bad = [m for m in {FORBIDDEN!r} if m in sys.modules]\n"
        "print(','.join(bad))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)
    assert result.stdout.strip() == "", f"services.core imported: {result.stdout.strip()}"
