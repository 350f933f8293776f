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
#   KAFKA_JVM_PERFORMANCE_OPTS  GC flags (default: G1 as in Kafka's kafka-run-class.sh;
#                       "-XX:+UseSerialGC -XX:TieredStopAtLevel=1" starts ~0.4 s faster)
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
# Version: Kafka 4.4.0 (org.apache.kafka:kafka_2.13:4.4.0), the newest 4.x served, rather
#   than the doc's 4.3.1 (the doc avoided 4.4.0 for kafka-tools, which is not needed here).
# [uncertain] broker Java minimum: 4.4.0 runs on Java 17. The newest class-file major in all
#   45 jars is 61 (Java 17). No UnsupportedClassVersionError.
# [inferred] Gradle api->compile, implementation->runtime: confirmed by `dependency:tree`.
#   kafka-clients and scala-library are compile scope. kafka-server, -metadata, -raft,
#   -storage, the coordinators, jackson, argparse4j and the rest are runtime scope.
#   copy-dependencies -DincludeScope=runtime gives the whole broker: 45 jars.
# [uncertain] log4j 2 served here: yes, from Maven Central.
# [uncertain] log4j artifacts and version in the 4.x POM: 4.4.0's kafka-server brings
#   log4j-api and log4j-core 2.25.5 at runtime scope (not "releaseOnly" any more), but no
#   SLF4J binding. pom.xml therefore pins log4j-api, log4j-core and log4j-slf4j-impl all at
#   2.25.5. The doc's 2.24.3 would have downgraded Kafka's own log4j. 4.4.0 also has
#   jackson-dataformat-yaml and snakeyaml at runtime scope, so a YAML log config would
#   parse too. The properties file is kept anyway.
# slf4j binding check: slf4j-api is 1.7.36 and there is exactly one binding,
#   log4j-slf4j-impl 2.25.5 (`mvn dependency:tree | grep -E 'log4j|slf4j'`). There are no
#   "SLF4J:" lines in kafka.out, and the kafka.* INFO lines do appear.
# [inferred] NoClassDefFoundError from Log4jControllerRegistration without a backend: not
#   tested. It does not apply to 4.4.0, where log4j-core is already a runtime dependency.
# [uncertain] StorageTool in kafka_2.13 4.4.0: kafka/tools/StorageTool.class and
#   kafka/Kafka.class are both in kafka_2.13-4.4.0.jar (kafka-fetch.sh checks this).
# Static quorum: controller.quorum.voters, formatted without --standalone, works on 4.4.0
#   (metadata.version 4.4-IV2). The "Performing controller activation" WARN is normal.
# [uncertain] jar size and first resolve time: 45 jars, `du -sh lib` = 43M. ~/.m2 grows by
#   69M. The first resolve with an empty Maven local repo (plugin + POMs + jars) took
#   5.7-6.2 s. A re-copy from a warm ~/.m2 took 3.4 s. With the marker present the fetch
#   takes 0.01 s. The doc's guess was 40-60 MB and 1-3 min.
# [uncertain] start-up time: 2.1-4.0 s from JVM launch to a successful client metadata
#   fetch. The whole kafka-up.sh, with a warm cache, takes 3.9-5.5 s (format about 0.9 s).
#   RSS is about 230-265 MB with -Xmx512m, with 83 threads. A SIGTERM shutdown takes
#   0.5-2 s.
# [inferred] share.coordinator.* keys: 4.4.0 knows them. There is no "supplied but are not
#   used" warning, and describe_configs shows share.coordinator.state.topic.replication.
#   factor=1. 3.9 was not tried, because 4.4.0 works.
# [uncertain] log.cleaner.dedupe.buffer.size=33554432 is accepted (describe_configs shows
#   it). 1048576 is rejected: "log.cleaner.dedupe.buffer.size must be at least 1MB per
#   cleaner thread".
# [uncertain] log.segment.bytes (KIP-1030): 16777216 is accepted. 524288 is rejected:
#   "Value must be at least 1048576", so the 1 MiB minimum is real.
# [uncertain in detail] cluster id: in 4.4.0, Uuid.randomUuid() (checked with javap)
#   re-rolls any id whose string CONTAINS '-', not only a leading one. This script makes the
#   id in Python with the same rule, which saves a 0.7 s JVM start.
# [inferred] lean JVM: -XX:+UseSerialGC -XX:TieredStopAtLevel=1 was measured at 1.6-1.7 s
#   to "Kafka Server started", against 2.1 s for G1. RSS 203 MB against 235 MB; 77 threads
#   against 83. G1 stays the default; set KAFKA_JVM_PERFORMANCE_OPTS to change it.
# [inferred] aiokafka 0.14.0 against KIP-896: confirmed in practice by smoke.py on 4.4.0.
#   Admin create/list/describe_configs/delete, acks=all idempotent produce, group join,
#   commit and resume, and offsets_for_times all work.
#   Quirks:
#   - The first group join on a fresh broker logs one "GroupCoordinatorNotAvailableError"
#     while __consumer_offsets is created; aiokafka retries.
#   - aiokafka's DescribeConfigsResponse calls the name field "config_names".
#   SASL is not tested (PLAINTEXT only).
# Not in the doc:
#   - System python3 has no aiokafka here, so the readiness check prefers <repo>/.venv.
#   - After SIGTERM the JVM can stay a zombie until its parent reaps it, so kafka-down.sh
#     counts state Z as exited.
#   - 4.4.0 defaults: log.message.timestamp.after.max.ms=3600000, so a producer timestamp
#     more than 1 h in the future is rejected; before.max.ms is unbounded. smoke.py
#     uses explicit timestamps around now - 10 min.
#   - Two brokers started in parallel on a cold cache (the fetch is serialised by flock)
#     were both ready 12.2 s after launch: 6 s fetch plus about 4.8 s each, two JVMs on
#     2 cores.
#   - Debian's mvn 3.8.7 prints ANSI escapes even with -B -q, so kafka-fetch.sh logs mvn to
#     .cache/mvn.log and shows it only on failure.
# ---------------------------------------------------------------------------------------
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
KDIR=${KAFKA_LOCAL_DIR:-$HERE/.cache}
LIB=$KDIR/lib
TIMEOUT=${KAFKA_START_TIMEOUT:-90}
HEAP=${KAFKA_HEAP_OPTS:--Xms128m -Xmx512m}
GC=${KAFKA_JVM_PERFORMANCE_OPTS:--XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent}
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
[[ "$PORT" =~ ^[0-9]+$ && "$CPORT" =~ ^[0-9]+$ ]] || die "bad ports: '$PORT' '$CPORT'"
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
  $HEAP $GC
  -XX:-UsePerfData -Djava.awt.headless=true
  -Dlog4j2.configurationFile="$HERE/log4j2.properties"
  -Dkafka.logs.dir="$RUN/logs"
)
CP="$LIB/*"   # quoted on purpose: the JVM expands lib/*, not the shell

# 4. format. Cluster id: Kafka's 22-char URL-safe base64 UUID, made in Python to save a
#    JVM start. Like org.apache.kafka.common.Uuid.randomUuid() (4.4.0) it rejects ids
#    containing '-' (one starting with '-' would be read as an option).
CLUSTER_ID=$("$PY" -c '
import base64, uuid
while True:
    s = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
    if "-" not in s:
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
