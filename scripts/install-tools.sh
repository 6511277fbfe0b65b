#!/usr/bin/env bash
# Installs the Debian tools the benchmarks and the dashboard test use, when
# missing: h2load (nghttp2-client) drives gRPC, wrk drives HTTP, chromium
# renders the perf dashboard headless. Idempotent; a no-op when all are there.
set -u
need=()
command -v h2load >/dev/null 2>&1 || need+=(nghttp2-client)
command -v wrk >/dev/null 2>&1 || need+=(wrk)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
[ ${#need[@]} -eq 0 ] && { echo "install-tools: h2load, wrk and chromium present"; exit 0; }
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "install-tools: missing ${need[*]} and cannot apt-get here; benchmarks needing them will say so" >&2
  exit 0
fi
echo "install-tools: installing ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null 2>&1 || true
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null 2>&1 \
  || echo "install-tools: apt-get install ${need[*]} failed; benchmarks needing them will say so" >&2
exit 0
