#!/usr/bin/env bash
# Stop a broker started by kafka-up.sh: tools/kafka/kafka-down.sh RUN_DIR
# SIGTERM to the pid in RUN_DIR/kafka.pid (only that pid; it is first checked to still be
# this run's kafka.Kafka JVM, so a recycled pid is never signalled), wait up to
# KAFKA_STOP_TIMEOUT (default 30) s for a controlled shutdown, then SIGKILL.
# Removes RUN_DIR afterwards unless KAFKA_KEEP_RUN=1. Exit 0 once the broker is gone.
set -euo pipefail
[ $# -eq 1 ] || { echo "usage: $0 RUN_DIR" >&2; exit 2; }
RUN=$(cd "$1" 2>/dev/null && pwd) || { echo "kafka-down: no such run dir: $1" >&2; exit 1; }
[ -f "$RUN/server.properties" ] && [ -f "$RUN/kafka.pid" ] \
  || { echo "kafka-down: $RUN is not a kafka-up.sh run dir (no server.properties/kafka.pid)" >&2; exit 1; }
PID=$(tr -dc '0-9' < "$RUN/kafka.pid")
[ -n "$PID" ] || { echo "kafka-down: empty pid file $RUN/kafka.pid" >&2; exit 1; }
TIMEOUT=${KAFKA_STOP_TIMEOUT:-30}

# alive = exists and is not a zombie (a zombie has exited; its parent just has not reaped it)
alive() {
  local st
  st=$(cat "/proc/$PID/stat" 2>/dev/null) || { kill -0 "$PID" 2>/dev/null; return; }
  st=${st##*) }
  [ "${st%% *}" != Z ]
}
ours() {
  [ -r "/proc/$PID/cmdline" ] || return 0   # no /proc: trust the pid file
  tr '\0' '\n' < "/proc/$PID/cmdline" | grep -qxF "$RUN/server.properties"
}

if alive; then
  if ! ours; then
    echo "kafka-down: pid $PID is not this run's broker any more; not signalling it" >&2
  else
    kill -TERM "$PID" 2>/dev/null || true
    end=$(( $(date +%s) + TIMEOUT ))
    while alive && [ "$(date +%s)" -lt "$end" ]; do sleep 0.2; done
    if alive; then
      echo "kafka-down: pid $PID still alive after ${TIMEOUT}s, sending SIGKILL" >&2
      kill -KILL "$PID" 2>/dev/null || true
      for _ in $(seq 1 50); do alive || break; sleep 0.1; done
    fi
    if alive; then echo "kafka-down: pid $PID did not die" >&2; exit 1; fi
  fi
fi
if [ "${KAFKA_KEEP_RUN:-0}" = 1 ]; then
  echo "kafka-down: run dir kept: $RUN" >&2
else
  rm -rf "$RUN"
fi
