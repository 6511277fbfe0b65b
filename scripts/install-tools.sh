#!/usr/bin/env bash
# Installs the Debian tools the benchmarks and some tests use, when missing:
# h2load (nghttp2-client) drives gRPC, wrk drives HTTP, chromium renders the
# perf dashboard headless; protoc (protobuf-compiler, with the well-known
# types of libprotobuf-dev) builds proto/prism/v1/descriptor.binpb
# (scripts/gen-descriptor.mjs) and checks what reflection serves; Debian's
# python3 with python3-grpcio and python3-protobuf runs the generic reflection
# client (test/e2e/reflection-interop.test.ts), with python3-pytest the Python
# SDK's suite (test/e2e/python-sdk.test.ts). Idempotent; a no-op when all
# are there.
set -u
need=()
command -v h2load >/dev/null 2>&1 || need+=(nghttp2-client)
command -v wrk >/dev/null 2>&1 || need+=(wrk)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
# protoc finds the well-known types (google/protobuf/struct.proto) in ../include next to it; Debian ships
# them in libprotobuf-dev, only a Recommends of protobuf-compiler (not installed below).
if protoc_bin=$(command -v protoc 2>/dev/null); then
  [ -f "$(dirname "$protoc_bin")/../include/google/protobuf/struct.proto" ] || [ -f /usr/include/google/protobuf/struct.proto ] || need+=(libprotobuf-dev)
else
  need+=(protobuf-compiler libprotobuf-dev)
fi
/usr/bin/python3 -c 'import grpc, google.protobuf' >/dev/null 2>&1 || need+=(python3-grpcio python3-protobuf)
/usr/bin/python3 -c 'import pytest' >/dev/null 2>&1 || need+=(python3-pytest)
[ ${#need[@]} -eq 0 ] && { echo "install-tools: h2load, wrk, chromium, protoc (+ well-known types) and python3 grpcio/protobuf/pytest present"; exit 0; }
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "install-tools: missing ${need[*]} and cannot apt-get here; the benchmarks and tests needing them will say so" >&2
  exit 0
fi
echo "install-tools: installing ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null 2>&1 || true
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null 2>&1 \
  || echo "install-tools: apt-get install ${need[*]} failed; the benchmarks and tests needing them will say so" >&2
exit 0
