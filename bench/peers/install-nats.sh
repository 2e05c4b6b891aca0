#!/usr/bin/env bash
# Installs the Debian `nats-server` package if it is missing and starts a server on loopback
# for the benchmark run (default port 14222, so a server already on 4222 is left alone).
#
#   bench/peers/install-nats.sh            # install if needed, start on 127.0.0.1:14222
#   bench/peers/install-nats.sh 4333       # another port
#   bench/peers/install-nats.sh --stop     # stop the server this script started
#
# Needs root (or sudo) for apt-get. The server's pid is kept in $PIDFILE.
set -euo pipefail

PORT=14222
PIDFILE=${NATS_PIDFILE:-/tmp/peerchannel-bench-nats.pid}

if [[ "${1:-}" == "--stop" ]]; then
    if [[ -f "$PIDFILE" ]] && kill "$(cat "$PIDFILE")" 2>/dev/null; then
        echo "nats-server $(cat "$PIDFILE") stopped"
    else
        echo "no nats-server started by this script is running"
    fi
    rm -f "$PIDFILE"
    exit 0
fi
[[ -n "${1:-}" ]] && PORT=$1

if ! command -v nats-server >/dev/null 2>&1; then
    SUDO=""
    [[ $(id -u) -ne 0 ]] && SUDO=sudo
    $SUDO apt-get update
    # The package's service is not wanted: this script runs its own server for the benchmark.
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y --no-install-recommends nats-server
fi
nats-server --version

if [[ -f "$PIDFILE" ]] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
    echo "nats-server already running (pid $(cat "$PIDFILE")); stop it with $0 --stop"
    exit 0
fi
nats-server -a 127.0.0.1 -p "$PORT" >/tmp/peerchannel-bench-nats.log 2>&1 &
echo $! >"$PIDFILE"
for _ in $(seq 50); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
        echo "nats-server listening on nats://127.0.0.1:$PORT (pid $(cat "$PIDFILE"), log /tmp/peerchannel-bench-nats.log)"
        exit 0
    fi
    sleep 0.1
done
echo "nats-server did not start; see /tmp/peerchannel-bench-nats.log" >&2
exit 1
