"""Real Kafka brokers for tests, and stopping and starting one again for the outage tests.

Three sources, chosen by `kafka_broker()` in this order:
- `MERIDIAN_TEST_KAFKA=host:port`: an existing broker (not stopped or restarted by the tests);
- a Docker engine that answers: testcontainers' `KafkaContainer` (KRaft);
- otherwise a local single-node KRaft broker from the Maven jars, started by
  `tools/kafka/kafka-up.sh` on free loopback ports and stopped by its PID with
  `tools/kafka/kafka-down.sh`.

`KafkaBroker.stop()` / `start_again()` take the same broker away and bring it back with the
same ports and the same data: the local broker by SIGTERM/SIGKILL to its PID and the same java
command line run again on its run directory; a container by pause and unpause. Both block:
call them from a worker thread (`asyncio.to_thread`) inside async code.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from tests.servers import ROOT, docker_answers, free_port

KAFKA_TOOLS = ROOT / "tools" / "kafka"
ENV_BOOTSTRAP = "MERIDIAN_TEST_KAFKA"
CONTAINER_IMAGE = "confluentinc/cp-kafka:7.6.0"


class KafkaUnavailable(RuntimeError):
    """No broker could be started; the message says why and what to run."""


class KafkaBroker:
    """A running broker the tests can reach at `bootstrap`."""

    bootstrap: str
    controllable = False
    kind = "external"

    def stop(self, *, kill: bool = False) -> None:
        raise RuntimeError(f"the {self.kind} Kafka at {self.bootstrap} cannot be stopped")

    def start_again(self) -> None:
        raise RuntimeError(f"the {self.kind} Kafka at {self.bootstrap} cannot be restarted")

    async def stop_async(self, *, kill: bool = False) -> None:
        """`stop()` for async tests (in a worker thread unless the broker has a better way)."""
        await asyncio.to_thread(self.stop, kill=kill)

    async def start_again_async(self) -> None:
        await asyncio.to_thread(self.start_again)

    def close(self) -> None:
        """Stop the broker for good (if this process started it)."""


class ExternalKafka(KafkaBroker):
    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap


class ContainerKafka(KafkaBroker):
    """testcontainers' KafkaContainer; an outage is a paused container (connections hang)."""

    controllable = True
    kind = "container"

    def __init__(self) -> None:
        from testcontainers.community.kafka import KafkaContainer

        self._container: Any = KafkaContainer(CONTAINER_IMAGE).with_kraft()
        self._container.start()
        self.bootstrap = self._container.get_bootstrap_server()

    def stop(self, *, kill: bool = False) -> None:
        self._container.get_wrapped_container().pause()

    def start_again(self) -> None:
        self._container.get_wrapped_container().unpause()
        wait_until_ready(self.bootstrap, timeout=60.0)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._container.get_wrapped_container().unpause()
        self._container.stop()


class LocalKafka(KafkaBroker):
    """A broker started by tools/kafka/kafka-up.sh, known by its run directory and PID."""

    controllable = True
    kind = "local"

    def __init__(self, run_dir: Path, bootstrap: str) -> None:
        self.run_dir = run_dir
        self.bootstrap = bootstrap
        self.pid = int((run_dir / "kafka.pid").read_text().strip())
        # The exact java command kafka-up.sh ran, to run it again on the same run directory.
        self.command = [a.decode() for a in
                        Path(f"/proc/{self.pid}/cmdline").read_bytes().split(b"\0") if a]
        if str(run_dir / "server.properties") not in self.command:
            raise KafkaUnavailable(f"pid {self.pid} is not the broker of {run_dir}")
        self._process: subprocess.Popen[bytes] | None = None  # set once we restarted it

    @classmethod
    def start(cls) -> LocalKafka:
        if shutil.which("java") is None and not os.environ.get("KAFKA_JAVA"):
            raise KafkaUnavailable("no `java` on PATH: the local Kafka broker needs Java 17+; "
                                   "run `make test`, which installs it and the Kafka jars")
        port = free_port(both=False)
        controller = free_port(both=False)
        while controller == port:
            controller = free_port(both=False)
        env = {**os.environ, "KAFKA_PORT": str(port), "KAFKA_CONTROLLER_PORT": str(controller),
               "KAFKA_PYTHON": sys.executable}
        try:
            result = subprocess.run([str(KAFKA_TOOLS / "kafka-up.sh")], env=env,
                                    capture_output=True, text=True, timeout=300,
                                    stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired as exc:
            raise KafkaUnavailable("tools/kafka/kafka-up.sh did not finish within 300 s") from exc
        lines = result.stdout.strip().splitlines()
        if result.returncode != 0 or not lines or not lines[-1].startswith("KAFKA_BOOTSTRAP="):
            tail = "\n".join(result.stderr.strip().splitlines()[-30:])
            raise KafkaUnavailable(
                f"tools/kafka/kafka-up.sh failed (exit {result.returncode}); run `make test`, "
                f"which installs java, maven and the Kafka jars. Its output:\n{tail}")
        fields = dict(item.split("=", 1) for item in lines[-1].split())
        return cls(Path(fields["KAFKA_RUN"]), fields["KAFKA_BOOTSTRAP"])

    def alive(self) -> bool:
        if self._process is not None:
            return self._process.poll() is None
        try:
            stat = Path(f"/proc/{self.pid}/stat").read_text()
        except FileNotFoundError:
            return False
        return stat.rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has exited

    def stop(self, *, kill: bool = False) -> None:
        """SIGTERM (a controlled shutdown) or SIGKILL (a crash) to the broker's PID; waits."""
        self._signal_stop(kill)
        deadline = time.monotonic() + 30
        while self.alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        self._finish_stop()

    async def stop_async(self, *, kill: bool = False) -> None:
        # No worker thread: a thread holding the GIL would show up in the caller's timings.
        self._signal_stop(kill)
        deadline = time.monotonic() + 30
        while self.alive() and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        self._finish_stop()

    def _signal_stop(self, kill: bool) -> None:
        if self.alive():
            os.kill(self.pid, signal.SIGKILL if kill else signal.SIGTERM)

    def _finish_stop(self) -> None:
        if self.alive():
            os.kill(self.pid, signal.SIGKILL)
            deadline = time.monotonic() + 10
            while self.alive() and time.monotonic() < deadline:
                time.sleep(0.05)
        if self._process is not None:
            self._process.wait(10)
        if self.alive():
            raise RuntimeError(f"Kafka pid {self.pid} did not stop")

    def start_again(self) -> None:
        """Run the same java command on the same run directory (same ports, same data)."""
        self._launch()
        wait_until_ready(self.bootstrap, timeout=90.0, alive=self.alive)

    async def start_again_async(self) -> None:
        self._launch()
        await wait_until_ready_async(self.bootstrap, timeout=90.0, alive=self.alive)

    def _launch(self) -> None:
        if self.alive():
            raise RuntimeError(f"Kafka pid {self.pid} is still running")
        with open(self.run_dir / "kafka.out", "ab") as out:
            self._process = subprocess.Popen(self.command, stdout=out, stderr=subprocess.STDOUT,
                                             stdin=subprocess.DEVNULL, start_new_session=True)
        self.pid = self._process.pid
        (self.run_dir / "kafka.pid").write_text(f"{self.pid}\n")

    def close(self) -> None:
        if self.run_dir.exists():
            result = subprocess.run([str(KAFKA_TOOLS / "kafka-down.sh"), str(self.run_dir)],
                                    capture_output=True, text=True, timeout=60)
            if result.returncode != 0:
                logging.getLogger(__name__).error("kafka-down.sh: %s", result.stderr)
        if self._process is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._process.wait(10)


def wait_until_ready(bootstrap: str, timeout: float,
                     alive: Callable[[], bool] | None = None) -> None:
    """Block until a client fetches the broker's metadata (as kafka-up.sh's check does)."""
    asyncio.run(wait_until_ready_async(bootstrap, timeout, alive))


async def wait_until_ready_async(bootstrap: str, timeout: float,
                                 alive: Callable[[], bool] | None = None) -> None:
    from aiokafka.admin import AIOKafkaAdminClient

    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        if alive is not None and not alive():
            raise RuntimeError(f"Kafka at {bootstrap} exited while starting")
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5000)
        try:
            await asyncio.wait_for(admin.start(), 10)
            cluster = await asyncio.wait_for(admin.describe_cluster(), 10)
            if cluster["brokers"]:
                await asyncio.wait_for(admin.list_topics(), 10)
                return
            last = f"no broker in metadata: {cluster}"
        except Exception as exc:  # not up yet: keep polling
            last = exc
        finally:
            with contextlib.suppress(Exception):
                await admin.close()
        await asyncio.sleep(0.2)
    raise TimeoutError(f"Kafka at {bootstrap} not ready after {timeout:.0f}s: {last!r}")


@contextlib.contextmanager
def kafka_broker() -> Iterator[KafkaBroker]:
    """The tests' broker: MERIDIAN_TEST_KAFKA, else a container, else the local jars."""
    bootstrap = os.environ.get(ENV_BOOTSTRAP)
    broker: KafkaBroker
    if bootstrap:
        broker = ExternalKafka(bootstrap)
    elif docker_answers():
        broker = ContainerKafka()
    else:
        broker = LocalKafka.start()
    try:
        yield broker
    finally:
        broker.close()


@contextlib.contextmanager
def controllable_kafka(shared: KafkaBroker) -> Iterator[KafkaBroker]:
    """A broker the caller may stop and restart: `shared` if it can be, else a local one."""
    if shared.controllable:
        yield shared
        return
    local = LocalKafka.start()
    try:
        yield local
    finally:
        local.close()
