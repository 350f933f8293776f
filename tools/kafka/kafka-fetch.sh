#!/usr/bin/env bash
# Resolve the Kafka broker's runtime jars from Maven Central into $KAFKA_LOCAL_DIR/lib
# (default tools/kafka/.cache/lib). Idempotent: a marker file holding the sha256 of
# pom.xml is written last, so a finished fetch is skipped and a changed pom.xml (e.g. a
# new kafka.version) triggers a fresh resolve. Concurrent callers serialise on a flock.
# All output goes to stderr; stdout stays empty (kafka-up.sh relies on that).
#
# Env: KAFKA_LOCAL_DIR  cache dir (default: <this dir>/.cache)
#      KAFKA_MVN        maven executable (default: mvn)
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
KDIR=${KAFKA_LOCAL_DIR:-$HERE/.cache}
LIB=$KDIR/lib
MVN=${KAFKA_MVN:-mvn}
DEP_PLUGIN=org.apache.maven.plugins:maven-dependency-plugin:3.6.1

want=$(sha256sum "$HERE/pom.xml" | cut -c1-64)
is_done() { [ -f "$LIB/.complete" ] && [ "$(cat "$LIB/.complete")" = "$want" ]; }
is_done && exit 0

mkdir -p "$KDIR"
exec 9>"$KDIR/.fetch.lock"
if command -v flock >/dev/null 2>&1; then
  flock -w 900 9 || { echo "kafka-fetch: timed out waiting for $KDIR/.fetch.lock" >&2; exit 1; }
fi
is_done && exit 0   # another process finished the fetch while we waited

command -v "$MVN" >/dev/null 2>&1 || { echo "kafka-fetch: '$MVN' not found (install maven)" >&2; exit 1; }
tmp=$(mktemp -d "$KDIR/lib.tmp.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
echo "kafka-fetch: resolving jars from Maven Central into $LIB ..." >&2
start=$(date +%s)
# maven's output goes to a log, shown only on failure (Debian's mvn 3.8.7 prints stray
# ANSI escapes even with -B -q)
if ! "$MVN" -B -q -f "$HERE/pom.xml" "$DEP_PLUGIN:copy-dependencies" \
    -DincludeScope=runtime -DoutputDirectory="$tmp" > "$KDIR/mvn.log" 2>&1; then
  cat "$KDIR/mvn.log" >&2
  echo "kafka-fetch: mvn failed (is Maven Central reachable? log: $KDIR/mvn.log)" >&2
  exit 1
fi
chmod 755 "$tmp"

# The main classes kafka.Kafka and kafka.tools.StorageTool live in kafka_2.13-*.jar.
shopt -s nullglob
core=("$tmp"/kafka_2.13-*.jar)
[ ${#core[@]} -eq 1 ] || { echo "kafka-fetch: expected one kafka_2.13-*.jar in $tmp" >&2; exit 1; }
python3 - "${core[0]}" <<'PY' || exit 1
import sys, zipfile
names = set(zipfile.ZipFile(sys.argv[1]).namelist())
missing = [c for c in ("kafka/Kafka.class", "kafka/tools/StorageTool.class") if c not in names]
if missing:
    sys.exit(f"kafka-fetch: {sys.argv[1]} lacks {missing}")
PY
echo "$want" > "$tmp/.complete"
rm -rf "$LIB"
mv "$tmp" "$LIB"
trap - EXIT
echo "kafka-fetch: $(ls "$LIB"/*.jar | wc -l) jars, $(du -sh "$LIB" | cut -f1), in $(( $(date +%s) - start )) s" >&2
