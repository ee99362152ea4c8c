#!/bin/sh
# Install the Debian packages portcullis needs to build, test and run.
# Idempotent: does nothing (and needs no network) when all are present.
set -eu

BUILD="gcc make cmake pkg-config libuv1-dev libmnl-dev libnetfilter-queue-dev libhttp-parser-dev
libssl-dev libyaml-dev libsystemd-dev libcmocka-dev"
RUNTIME="iptables iproute2 systemd procps util-linux"
TEST="curl python3 clang-format"
EXTRA=${PCL_EXTRA_PACKAGES:-}

missing=""
for p in $BUILD $RUNTIME $TEST $EXTRA; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $p"
    fi
done
if [ -z "$missing" ]; then
    exit 0
fi
if [ "$(id -u)" != 0 ]; then
    echo "install-deps: missing packages:$missing; run as root (sudo) to install them" >&2
    exit 1
fi
echo "install-deps: installing$missing" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -q >&2
# shellcheck disable=SC2086
apt-get install -y -q --no-install-recommends $missing >&2
