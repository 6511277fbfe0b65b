#!/usr/bin/env bash
# Installs the Debian tools the benchmarks and some tests use, when missing:
# h2load (nghttp2-client) drives gRPC, wrk drives HTTP, chromium renders the
# perf dashboard headless; protoc (protobuf-compiler, with the well-known
# types of libprotobuf-dev) builds proto/prism/v1/descriptor.binpb
# (scripts/gen-descriptor.mjs) and checks what reflection serves; Debian's
# python3 with python3-grpcio and python3-protobuf runs the generic reflection
# client (test/e2e/reflection-interop.test.ts), with python3-pytest the Python
# SDK's suite (test/e2e/python-sdk.test.ts).
# Idempotent: a no-op (exit 0) when all are there. Exits 1, naming what is
# missing, when it cannot install them (not root, no apt-get, or apt-get
# failed: its output is printed), since CI (PRISM_REQUIRE_TOOLS=1) needs them.
set -u

# The Debian packages still needed, one line each (none: all present).
missing() {
  command -v h2load >/dev/null 2>&1 || echo nghttp2-client
  command -v wrk >/dev/null 2>&1 || echo wrk
  command -v chromium >/dev/null 2>&1 || echo chromium
  # protoc finds the well-known types (google/protobuf/struct.proto) in ../include next to it; Debian ships
  # them in libprotobuf-dev, only a Recommends of protobuf-compiler (not installed below).
  local protoc_bin
  if protoc_bin=$(command -v protoc 2>/dev/null); then
    [ -f "$(dirname "$protoc_bin")/../include/google/protobuf/struct.proto" ] || [ -f /usr/include/google/protobuf/struct.proto ] || echo libprotobuf-dev
  else
    echo protobuf-compiler
    echo libprotobuf-dev
  fi
  /usr/bin/python3 -c 'import grpc, google.protobuf' >/dev/null 2>&1 || { echo python3-grpcio; echo python3-protobuf; }
  /usr/bin/python3 -c 'import pytest' >/dev/null 2>&1 || echo python3-pytest
}

mapfile -t need < <(missing)
[ ${#need[@]} -eq 0 ] && { echo "install-tools: h2load, wrk, chromium, protoc (+ well-known types) and python3 grpcio/protobuf/pytest present"; exit 0; }
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "install-tools: FAILED: missing ${need[*]} and cannot apt-get here (not root, or no apt-get); install them (apt-get install -y --no-install-recommends ${need[*]})" >&2
  exit 1
fi
echo "install-tools: installing ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
log=$(mktemp)
trap 'rm -f "$log"' EXIT
apt-get update -qq >"$log" 2>&1 || { echo "install-tools: apt-get update failed (trying the install anyway):" >&2; tail -n 20 "$log" >&2; }
if ! apt-get install -y -qq --no-install-recommends "${need[@]}" >"$log" 2>&1; then
  echo "install-tools: FAILED: apt-get install ${need[*]}:" >&2
  tail -n 40 "$log" >&2
  exit 1
fi
mapfile -t still < <(missing)
if [ ${#still[@]} -ne 0 ]; then
  echo "install-tools: FAILED: still missing after apt-get install: ${still[*]}" >&2
  exit 1
fi
echo "install-tools: installed ${need[*]}"
