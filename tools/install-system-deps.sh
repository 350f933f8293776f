#!/usr/bin/env bash
# Install the Debian packages the test suite and benchmarks use: redis-server (store tests),
# aria2 and transmission-cli (real BitTorrent clients), opentracker (the benchmark peer).
# Idempotent: packages already installed are skipped, so a second `make test` does no apt work.
set -euo pipefail
PACKAGES=(redis-server redis-tools aria2 transmission-cli opentracker)
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "system packages: all present (${PACKAGES[*]})"
  exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "need root or sudo to apt-get install ${missing[*]}" >&2; exit 1; }
  SUDO=sudo
fi
echo "system packages: installing ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
# On a host with systemd the packages start their own services (opentracker takes port 6969,
# the tracker's default). The tests start their own servers on free ports; stop and disable
# the services that this install just started so they hold no ports.
if command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
  for unit in opentracker redis-server; do
    if printf '%s\n' "${missing[@]}" | grep -qx "$unit"; then
      $SUDO systemctl disable --now "$unit" >/dev/null 2>&1 || true
    fi
  done
fi
