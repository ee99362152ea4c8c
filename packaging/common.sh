# Shared by demo.sh and test.sh (sourced): deps, journald, build.
set -eu
SRC=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BUILD_DIR:-$SRC/build}

if [ "$(id -u)" != 0 ]; then
    echo "$(basename "$0"): must run as root (sudo $0): it creates network namespaces and rules" >&2
    exit 1
fi
"$SRC/packaging/install-deps.sh"

# No systemd as PID 1 (containers, CI): start journald ourselves.  A socket
# file left behind by a journald that has since died refuses connections, so
# probe it rather than trusting that the file exists.
journal_alive() {
    python3 -c 'import socket,sys; s=socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); s.connect(sys.argv[1])' \
        /run/systemd/journal/socket 2>/dev/null
}
if ! journal_alive; then
    echo "starting systemd-journald (no journal was running)" >&2
    /lib/systemd/systemd-journald >/dev/null 2>&1 &
    for _ in $(seq 100); do journal_alive && break; sleep 0.1; done
    journal_alive || { echo "$(basename "$0"): systemd-journald did not start" >&2; exit 1; }
fi

cmake -S "$SRC" -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo ${CMAKE_EXTRA_ARGS:-} >/dev/null
cmake --build "$BUILD" -j"$(nproc)"
