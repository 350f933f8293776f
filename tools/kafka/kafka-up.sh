#!/usr/bin/env bash
# Start a throwaway single-node Apache Kafka broker (KRaft, broker+controller in one JVM)
# on 127.0.0.1, from jars resolved from Maven Central (no Docker, no tarball).
#
# Usage: tools/kafka/kafka-up.sh
#   stdout: exactly one line   KAFKA_BOOTSTRAP=127.0.0.1:PORT KAFKA_RUN=/abs/run/dir
#   stderr: progress; on failure the tail of the broker log (exit status non-zero,
#           the JVM this script started is killed and the run dir removed unless
#           KAFKA_KEEP_RUN=1).
#   Stop with: tools/kafka/kafka-down.sh "$KAFKA_RUN"
#
# Env:
#   KAFKA_PORT, KAFKA_CONTROLLER_PORT  loopback ports (free ones are picked if unset)
#   KAFKA_LOCAL_DIR     cache dir: lib/ (jars) and runs/ (data dirs); default
#                       tools/kafka/.cache (git-ignored)
#   KAFKA_PYTHON        interpreter for the readiness check (default: <repo>/.venv/bin/python
#                       if present, else python3). If it can import aiokafka the check is a
#                       real client metadata fetch; otherwise TCP connect + log line.
#   KAFKA_START_TIMEOUT seconds to wait for readiness (default 90)
#   KAFKA_HEAP_OPTS     JVM heap flags (default "-Xms128m -Xmx512m")
#   KAFKA_JAVA          java executable (default $JAVA_HOME/bin/java or java)
#   KAFKA_KEEP_RUN=1    keep the run dir when start-up fails
#
# The JVM is started in the background in this script's process group, with its
# stdin/stdout/stderr redirected (so `subprocess.run(..., capture_output=True)` returns as
# soon as this script exits). Its log is $RUN/kafka.out, its pid $RUN/kafka.pid.
#
# ---------------------------------------------------------------------------------------
# What was found on the first real runs (2 cores, OpenJDK 17.0.15, Maven 3.8.7,
# aiokafka 0.14.0), for each point /work/shared/kafka-from-maven.md marks [uncertain] or
# [inferred]:
@FINDINGS@
# ---------------------------------------------------------------------------------------
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
KDIR=${KAFKA_LOCAL_DIR:-$HERE/.cache}
LIB=$KDIR/lib
TIMEOUT=${KAFKA_START_TIMEOUT:-90}
HEAP=${KAFKA_HEAP_OPTS:--Xms128m -Xmx512m}
if [ -n "${KAFKA_JAVA:-}" ]; then JAVA=$KAFKA_JAVA
elif [ -n "${JAVA_HOME:-}" ] && [ -x "$JAVA_HOME/bin/java" ]; then JAVA=$JAVA_HOME/bin/java
else JAVA=java; fi
if [ -n "${KAFKA_PYTHON:-}" ]; then PY=$KAFKA_PYTHON
elif [ -x "$REPO/.venv/bin/python" ]; then PY=$REPO/.venv/bin/python
else PY=python3; fi

log() { echo "kafka-up: $*" >&2; }
die() { log "$*"; exit 1; }

command -v "$JAVA" >/dev/null 2>&1 || die "java not found (need Java 17+)"
command -v "$PY" >/dev/null 2>&1 || die "python interpreter '$PY' not found"
jver=$("$JAVA" -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java.specification.version = //p')
[ "${jver%%.*}" -ge 17 ] 2>/dev/null || die "Kafka 4.x brokers need Java 17+, '$JAVA' is ${jver:-unknown}"

# 1. jars (once; marker file $LIB/.complete)
"$HERE/kafka-fetch.sh" </dev/null >&2

# 2. ports: the caller's, or free loopback ports (both sockets held open while choosing,
#    so the two differ)
if [ -z "${KAFKA_PORT:-}" ] || [ -z "${KAFKA_CONTROLLER_PORT:-}" ]; then
  read -r p1 p2 < <("$PY" - "${KAFKA_PORT:-}" "${KAFKA_CONTROLLER_PORT:-}" <<'PY'
import socket, sys
taken = {int(a) for a in sys.argv[1:] if a}
socks, ports = [], []
while len(ports) < 2:
    s = socket.socket(); s.bind(("127.0.0.1", 0)); socks.append(s)
    p = s.getsockname()[1]
    if p not in taken:
        ports.append(p)
print(*ports)
PY
  )
  KAFKA_PORT=${KAFKA_PORT:-$p1}
  KAFKA_CONTROLLER_PORT=${KAFKA_CONTROLLER_PORT:-$p2}
fi
PORT=$KAFKA_PORT CPORT=$KAFKA_CONTROLLER_PORT
[ "$PORT" != "$CPORT" ] || die "KAFKA_PORT and KAFKA_CONTROLLER_PORT must differ ($PORT)"

# 3. a fresh run dir + config
mkdir -p "$KDIR/runs"
RUN=$(mktemp -d "$KDIR/runs/run.XXXXXX")
PID=
ok=0
cleanup() {
  [ "$ok" = 1 ] && return
  if [ -n "$PID" ] && kill -0 "$PID" 2>/dev/null; then
    kill -TERM "$PID" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$PID" 2>/dev/null || break; sleep 0.2; done
    kill -KILL "$PID" 2>/dev/null || true
    wait "$PID" 2>/dev/null || true
  fi
  if [ -f "$RUN/kafka.out" ]; then
    { echo "---- tail of $RUN/kafka.out ----"; tail -n 60 "$RUN/kafka.out"; echo "----"; } >&2
  fi
  if [ "${KAFKA_KEEP_RUN:-0}" = 1 ]; then log "run dir kept: $RUN"; else rm -rf "$RUN"; fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

sed -e "s#@PORT@#$PORT#g" -e "s#@CONTROLLER_PORT@#$CPORT#g" -e "s#@DATA_DIR@#$RUN#g" \
    "$HERE/server.properties.in" > "$RUN/server.properties"

# shellcheck disable=SC2206
JAVA_OPTS=(
  $HEAP
  -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35
  -XX:+ExplicitGCInvokesConcurrent -XX:-UsePerfData -Djava.awt.headless=true
  -Dlog4j2.configurationFile="$HERE/log4j2.properties"
  -Dkafka.logs.dir="$RUN/logs"
)
CP="$LIB/*"   # quoted on purpose: the JVM expands lib/*, not the shell

# 4. format. Cluster id: Kafka's 22-char URL-safe base64 UUID, made in Python to save a
#    JVM start; never starts with '-' (argparse would read it as an option).
CLUSTER_ID=$("$PY" -c '
import base64, uuid
while True:
    s = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
    if not s.startswith("-"):
        print(s); break')
"$JAVA" "${JAVA_OPTS[@]}" -cp "$CP" kafka.tools.StorageTool format \
    --cluster-id "$CLUSTER_ID" --config "$RUN/server.properties" \
    > "$RUN/format.out" 2>&1 \
  || { cat "$RUN/format.out" >&2; die "kafka.tools.StorageTool format failed"; }

# 5. start
t0=$(date +%s%3N)
nohup "$JAVA" "${JAVA_OPTS[@]}" -cp "$CP" kafka.Kafka "$RUN/server.properties" \
    > "$RUN/kafka.out" 2>&1 < /dev/null &
PID=$!
echo "$PID" > "$RUN/kafka.pid"
log "broker pid $PID, port $PORT (controller $CPORT), run dir $RUN"

# 6. readiness
if "$PY" -c 'import aiokafka' >/dev/null 2>&1; then
  # a real client metadata fetch: bootstrap + MetadataRequest listing this broker
  "$PY" - "$PORT" "$PID" "$TIMEOUT" <<'PY' || die "broker not ready (aiokafka metadata fetch)"
import asyncio, logging, os, sys, time
logging.disable(logging.CRITICAL)   # aiokafka logs every refused connection
from aiokafka.admin import AIOKafkaAdminClient
port, pid, timeout = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])

def alive():
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False
    except OSError:
        try: os.kill(pid, 0); return True
        except OSError: return False

async def main():
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        if not alive():
            sys.exit(f"kafka-up: broker pid {pid} exited during start-up")
        admin = AIOKafkaAdminClient(bootstrap_servers=f"127.0.0.1:{port}",
                                    request_timeout_ms=5000)
        try:
            await asyncio.wait_for(admin.start(), 10)
            cluster = await asyncio.wait_for(admin.describe_cluster(), 10)
            if any(b["port"] == port for b in cluster["brokers"]):
                await asyncio.wait_for(admin.list_topics(), 10)
                return
            last = f"no broker in metadata: {cluster}"
        except Exception as e:  # noqa: BLE001 - keep polling
            last = repr(e)
        finally:
            try: await admin.close()
            except Exception: pass
        await asyncio.sleep(0.3)
    sys.exit(f"kafka-up: not ready after {timeout:.0f}s; last error: {last}")

asyncio.run(main())
PY
else
  log "aiokafka not importable by '$PY': falling back to TCP check + log line"
  deadline=$(( $(date +%s) + TIMEOUT ))
  until (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; do
    kill -0 "$PID" 2>/dev/null || die "broker pid $PID exited during start-up"
    [ "$(date +%s)" -lt "$deadline" ] || die "port $PORT not open after ${TIMEOUT}s"
    sleep 0.3
  done
  until grep -q "Kafka Server started" "$RUN/kafka.out"; do
    kill -0 "$PID" 2>/dev/null || die "broker pid $PID exited during start-up"
    [ "$(date +%s)" -lt "$deadline" ] || die "no 'Kafka Server started' after ${TIMEOUT}s"
    sleep 0.3
  done
fi
ms=$(( $(date +%s%3N) - t0 ))
log "ready in $((ms / 1000)).$(printf '%03d' $((ms % 1000))) s after JVM launch"
ok=1
echo "KAFKA_BOOTSTRAP=127.0.0.1:$PORT KAFKA_RUN=$RUN"
