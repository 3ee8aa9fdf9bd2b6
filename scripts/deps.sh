#!/usr/bin/env bash
# Installs the Debian 12 packages fleetvault needs to build, test, fuzz and benchmark.
# Idempotent: does nothing when every package is already installed. Uses sudo when not root.
set -euo pipefail
pkgs=(build-essential cmake pkg-config clang libclang-rt-14-dev
      libssl-dev libwebsockets-dev libwebsockets-evlib-ev libev-dev libprotobuf-c-dev protobuf-c-compiler
      libjansson-dev libsqlite3-dev libzstd-dev libcmocka-dev libcurl4-openssl-dev libarchive-dev libicu-dev
      libxml2-dev zlib1g-dev
      python3 curl openssl procps)
pkgs+=(libxml2-utils)  # xmllint: the OpenADR tests validate every message against the 2.0b schema
# MQTT (src/mqtt, docs/mqtt.md): the client library; the broker and mosquitto_sub for its test
pkgs+=(libmosquitto-dev mosquitto mosquitto-clients)
pkgs+=(chromium)       # the web console's browser tests (tests/browser) drive it headless
# NATS JetStream (src/cluster, docs/cluster.md): the client library to build, the server for
# tests/e2e/test_cluster.py
pkgs+=(libnats-dev nats-server)
pkgs+=(prometheus)     # promtool: tests/e2e/test_prometheus.py queries the Prometheus API with it
# node and npm: the MCAP interop test and benchmark run the official TypeScript library
# (tests/js). A node already installed (with its own npm) is kept.
command -v node >/dev/null 2>&1 || pkgs+=(nodejs)
command -v npm >/dev/null 2>&1 || pkgs+=(npm)
missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "deps: installing ${missing[*]}" >&2
    SUDO=""
    [ "$(id -u)" -ne 0 ] && SUDO=sudo
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
# The npm packages of tests/js (MCAP interop) and ui/ (the web console: uPlot; playwright-core
# for its browser tests), as locked; again only when a lock file changed.
for js in "$(dirname "$0")/../tests/js" "$(dirname "$0")/../ui"; do
    if [ ! -f "$js/node_modules/.package-lock.json" ] ||
       [ "$js/package-lock.json" -nt "$js/node_modules/.package-lock.json" ]; then
        echo "deps: npm ci in ${js#*/../}" >&2
        (cd "$js" && npm ci --no-audit --no-fund --loglevel=error)
    fi
done
