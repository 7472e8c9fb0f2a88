#!/bin/bash
# rcpt_cpu.sh - backstop's CPU (perf stat task-clock) for a flood of pipelined RCPTs to unknown
# map: recipients: `smtp_flood -P -c C -n N -r R`. Compares binaries run alternately, to see what
# a change costs per RCPT; figures vary by about 15 % from run to run on a busy machine.
# Usage: bench/rcpt_cpu.sh [-c CONNS] [-n SESSIONS] [-r RCPTS] [-k ROUNDS] BINARY...
# Needs perf (linux-perf) and build/bench/smtp_flood (or SMTP_FLOOD).
set -euo pipefail
conns=20 sessions=4000 rcpts=50 rounds=3
while getopts c:n:r:k: o; do
	case $o in c) conns=$OPTARG ;; n) sessions=$OPTARG ;; r) rcpts=$OPTARG ;; k) rounds=$OPTARG ;;
	*) exit 1 ;; esac
done
shift $((OPTIND - 1))
[ $# -gt 0 ] || set -- build/backstop
flood=${SMTP_FLOOD:-build/bench/smtp_flood}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "alice@example.test OK" > "$tmp/users.map"
# a key the binary knows (an older build refuses keys it lacks): "key = value", else nothing
key_line() {
	printf '[gateway]\nlisten = 127.0.0.1:0\ncache = memory:\n%s = %s\n[domain example.test]\ndeliver = 127.0.0.1:1\n' "$2" "$3" > "$tmp/probe.conf"
	"$1" check-config -c "$tmp/probe.conf" > /dev/null 2>&1 && echo "$2 = $3" || true
}
free_port() { /usr/bin/python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
run_one() {
	local bin=$1 port
	port=$(free_port)
	cat > "$tmp/backstop.conf" <<CONF
[gateway]
listen = 127.0.0.1:$port
hostname = gw.test
cache = memory:
log_level = warning
workers = 1
max_connections = 1000
max_connections_per_ip = 1000
max_errors = 100000
$(key_line "$bin" harvest_limit 0)
$(key_line "$bin" harvest_network_limit 0)
[domain example.test]
deliver = 127.0.0.1:9
verify = map:$tmp/users.map
CONF
	"$bin" run -c "$tmp/backstop.conf" 2>/dev/null &
	local pid=$!
	for _ in $(seq 100); do (echo > /dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.05; done
	perf stat -e task-clock -p $pid -o "$tmp/stat" 2>/dev/null &
	local perf=$!
	"$flood" -P -c "$conns" -n "$sessions" -r "$rcpts" -t nobody@example.test -u 200 127.0.0.1:$port > "$tmp/flood"
	kill -INT $perf; wait $perf || true
	kill $pid; wait $pid || true
	local ms
	ms=$(awk '/task-clock/ { gsub(",", "", $1); print $1 }' "$tmp/stat")
	awk -v b="$bin" -v ms="$ms" -v n=$((sessions * rcpts)) \
		'{ printf "%-40s %9.1f ms  %6.2f us/RCPT  %s\n", b, ms, ms * 1000 / n, $0 }' "$tmp/flood" | cut -c1-120
}
echo "rcpt_cpu: smtp_flood -P -c $conns -n $sessions -r $rcpts to unknown map: recipients, $rounds rounds"
for _ in $(seq "$rounds"); do
	for b in "$@"; do run_one "$b"; done
done
