#!/bin/bash
# Sessions per second: connect, HELO, MAIL, RCPT (refused: relay attempt), RSET, QUIT, driven by
# Postfix's smtp-source, against backstop and, as the comparison, against a private Postfix
# smtpd with the same relay refusal (reject_unauth_destination: 554 5.7.1 Relay access denied).
# smtp-source answers a refused RCPT with RSET and QUIT and never reaches DATA, so every session
# is exactly the rejection flood a gateway sees most. (-c, the DATA counter, would show nothing.)
#
# usage: bench/sessions.sh [MESSAGES [SESSIONS]]     defaults: 20000 sessions, 20 in parallel
# env:   BACKSTOP_BIN (default build/backstop)
# Runs only on 127.0.0.1; needs root for the Postfix instance. Not part of make test.
set -euo pipefail
cd "$(dirname "$0")/.."

N=${1:-20000}
S=${2:-20}
BACKSTOP_BIN=${BACKSTOP_BIN:-build/backstop}
SMTP_SOURCE=/usr/sbin/smtp-source
TMP=$(mktemp -d /tmp/backstop-bench.XXXXXX)
BPID=
PF_STARTED=

cleanup() {
	if [ -n "$BPID" ]; then kill -TERM "$BPID" 2>/dev/null || true; wait "$BPID" 2>/dev/null || true; fi
	if [ -n "$PF_STARTED" ]; then postfix -c "$TMP/postfix" stop >/dev/null 2>&1 || true; fi
	rm -rf "$TMP"
}
trap cleanup EXIT

free_port() {
	/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# run_load LABEL HOST:PORT -> prints sessions/s
run_load() {
	local label=$1 addr=$2 t0 t1
	"$SMTP_SOURCE" -A -s "$S" -m 200 -M client.test -f sender@client.test -t victim@evil.test \
		"$addr" >/dev/null 2>&1                                # warm-up
	t0=$(date +%s.%N)
	"$SMTP_SOURCE" -A -s "$S" -m "$N" -M client.test -f sender@client.test -t victim@evil.test \
		"$addr" > "$TMP/$label.out" 2>&1
	t1=$(date +%s.%N)
	local refused
	refused=$(grep -c 'recipient rejected: 554' "$TMP/$label.out" || true)
	/usr/bin/python3 -c "import sys; n,t0,t1=int(sys.argv[1]),float(sys.argv[2]),float(sys.argv[3]); \
print(f'%-10s {n} sessions, {sys.argv[4]} in parallel: {t1-t0:.2f} s, {n/(t1-t0):,.0f} sessions/s ({sys.argv[5]} relay refusals seen)' % sys.argv[6])" \
		"$N" "$t0" "$t1" "$S" "$refused" "$label"
}

start_backstop() {
	cat > "$TMP/backstop.conf" <<CONF
[gateway]
listen = 127.0.0.1:0
hostname = mx.bench.test
workers = auto
cache = memory:
max_connections = 100000
max_connections_per_ip = 100000
log_level = notice

[domain example.test]
deliver = 127.0.0.1:1
CONF
	"$BACKSTOP_BIN" run -c "$TMP/backstop.conf" 2> "$TMP/backstop.log" &
	BPID=$!
	for _ in $(seq 100); do
		BADDR=$(grep -o 'ready listen=[^ ]*' "$TMP/backstop.log" | head -1 | cut -d= -f2) || true
		[ -n "$BADDR" ] && return 0
		sleep 0.1
	done
	echo "backstop did not start:" >&2; cat "$TMP/backstop.log" >&2; exit 1
}

# A private Postfix instance: own config_directory, queue and data dirs under $TMP, smtpd only
# on 127.0.0.1:PORT; the system's Postfix is not touched.
start_postfix() {
	local d=$TMP/postfix port
	port=$(free_port)
	mkdir -p "$d" "$TMP/pf-queue" "$TMP/pf-data"
	chmod 755 "$TMP"                       # mktemp -d is 0700: the postfix user must get in
	chown postfix "$TMP/pf-data"
	cat > "$d/main.cf" <<CONF
compatibility_level = 3.6
queue_directory = $TMP/pf-queue
data_directory = $TMP/pf-data
mail_owner = postfix
setgid_group = postdrop
myhostname = mx.bench.test
mydestination =
relay_domains = example.test
mynetworks = 192.0.2.1/32
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
smtpd_relay_restrictions = reject_unauth_destination
smtpd_recipient_restrictions =
smtpd_client_connection_count_limit = 0
smtpd_client_connection_rate_limit = 0
smtpd_peername_lookup = no
smtpd_banner = \$myhostname ESMTP
default_process_limit = 200
maillog_file = /dev/stdout
master_service_disable = pickup.unix qmgr.unix
CONF
	cat > "$d/master.cf" <<CONF
127.0.0.1:$port inet n - n - $S smtpd
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
pickup    unix  n       -       n       60      1       pickup
rewrite   unix  -       -       n       -       -       trivial-rewrite
anvil     unix  -       -       n       -       1       anvil
proxymap  unix  -       -       n       -       -       proxymap
postlog   unix-dgram n  -       n       -       1       postlogd
CONF
	postfix -c "$d" post-install create-missing >/dev/null 2>&1 || true
	# start-fg keeps master in the foreground (our child) and logs to its stdout: no syslog needed
	postfix -c "$d" start-fg > "$TMP/pf.log" 2>&1 &
	PF_STARTED=1
	PADDR=127.0.0.1:$port
	for _ in $(seq 100); do
		if (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null; then return 0; fi
		sleep 0.1
	done
	echo "postfix smtpd did not start:" >&2; cat "$TMP/pf.log" >&2; exit 1
}

echo "bench/sessions.sh: $N sessions (connect, HELO, MAIL, RCPT refused, RSET, QUIT), $S parallel, $(nproc) cores"
start_backstop
run_load backstop "$BADDR"
rss=$(awk '/VmRSS/ {print $2, $3}' "/proc/$BPID/status")
echo "           backstop RSS after the run: $rss (one process, $(ls /proc/$BPID/task | wc -l) threads)"
if command -v postfix >/dev/null && [ "$(id -u)" -eq 0 ]; then
	start_postfix
	run_load postfix "$PADDR"
	echo "           compared with: Postfix $(postconf -d -h mail_version) smtpd (one process per session, up to $S), same refusal"
else
	echo "postfix comparison skipped (needs root and the postfix package)"
fi
