# Shared by demo.sh and test.sh (sourced): deps, journald, build.
set -eu
SRC=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BUILD_DIR:-$SRC/build}

if [ "$(id -u)" != 0 ]; then
    echo "$(basename "$0"): must run as root (sudo $0): it creates network namespaces and rules" >&2
    exit 1
fi
"$SRC/packaging/install-deps.sh"

# No systemd as PID 1 (containers, CI): start journald ourselves.
if [ ! -S /run/systemd/journal/socket ]; then
    echo "starting systemd-journald (no journal was running)" >&2
    /lib/systemd/systemd-journald >/dev/null 2>&1 &
    for _ in $(seq 100); do [ -S /run/systemd/journal/socket ] && break; sleep 0.1; done
fi

cmake -S "$SRC" -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo ${CMAKE_EXTRA_ARGS:-} >/dev/null
cmake --build "$BUILD" -j"$(nproc)"
