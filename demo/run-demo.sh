#!/bin/bash
# make demo: build backstop, start it on loopback with demo/backstop.conf, and show with swaks
#   1. a message for an existing user, delivered in-line to the backend (and where it landed),
#   2. a message for a user who does not exist, refused at RCPT with 550 (no bounce anywhere),
#   3. `backstop verify` explaining both verdicts,
#   4. a relay attempt to a foreign domain refused at RCPT,
#   5. an address-form relay trick (percent hack) refused at RCPT,
#   6. the first message again with the backend down: 4xx, never 250;
# then stop backstop. Installs missing packages with apt-get (needs root) only if any is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

BUILD=${BUILD:-build}
CONF=demo/backstop.conf
RUN=demo/run
NEEDED=(build-essential meson ninja-build pkg-config libevent-dev libssl-dev liblmdb-dev
	libc-ares-dev libldap2-dev libinih-dev libcmocka-dev swaks postfix)
BACKEND=127.0.0.1:2526     # must match deliver = in demo/backstop.conf
BACKSTOP_PID=
SINK_PID=

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

install_missing() {
	local missing=()
	for p in "${NEEDED[@]}"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
	done
	[ ${#missing[@]} -eq 0 ] && return 0
	say "installing: ${missing[*]}"
	if [ "$(id -u)" -ne 0 ]; then
		echo "run as root (or install these first): ${missing[*]}" >&2
		exit 1
	fi
	apt-get update
	echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
	DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
}

build() {
	say "building"
	make --no-print-directory build BUILD="$BUILD"
}

# The backend that backstop delivers to in-line: Postfix's smtp-sink test server, which
# accepts every message and throws it away. (Only the program is used; no Postfix instance.)
start_backend() {
	say "starting the backend: smtp-sink on $BACKEND"
	rm -rf "$RUN/mailbox"
	mkdir -p "$RUN/mailbox"
	chmod 777 "$RUN/mailbox"
	# -d: keep each message it accepts as a file in the mailbox folder (%M = a unique name)
	/usr/sbin/smtp-sink -u nobody -h backend.demo.test -d "$RUN/mailbox/%M." "$BACKEND" 10 &
	SINK_PID=$!
	for _ in $(seq 50); do
		(exec 3<>"/dev/tcp/${BACKEND%:*}/${BACKEND#*:}") 2>/dev/null && return 0
		sleep 0.1
	done
	echo "smtp-sink did not start on $BACKEND" >&2
	exit 1
}

# A message while the backend is down: never 250, the client is told to try again later.
stop_backend() {
	if [ -n "$SINK_PID" ]; then kill -TERM "$SINK_PID" 2>/dev/null || true; wait "$SINK_PID" 2>/dev/null || true; fi
	SINK_PID=
}

start_backstop() {
	say "starting backstop -c $CONF"
	mkdir -p "$RUN"
	: > "$RUN/backstop.log"
	"$BUILD/backstop" check-config -c "$CONF"
	"$BUILD/backstop" run -c "$CONF" 2> "$RUN/backstop.log" &
	BACKSTOP_PID=$!
	for _ in $(seq 100); do
		ADDR=$(grep -o 'ready listen=[^ ]*' "$RUN/backstop.log" | head -1 | cut -d= -f2) || true
		[ -n "$ADDR" ] && break
		kill -0 "$BACKSTOP_PID" 2>/dev/null || { cat "$RUN/backstop.log"; exit 1; }
		sleep 0.1
	done
	[ -n "${ADDR:-}" ] || { echo "backstop did not become ready" >&2; cat "$RUN/backstop.log"; exit 1; }
	echo "backstop (pid $BACKSTOP_PID) listening on $ADDR"
}

stop_all() {
	if [ -n "$BACKSTOP_PID" ] && kill -0 "$BACKSTOP_PID" 2>/dev/null; then
		kill -TERM "$BACKSTOP_PID"
		wait "$BACKSTOP_PID" || true
	fi
	BACKSTOP_PID=
	stop_backend
}
trap stop_all EXIT

swaks_demo() {  # title, expected, swaks args...
	local title=$1 expect=$2; shift 2
	say "$title"
	swaks --server "$ADDR" --helo client.demo.test --from alice@client.demo.test \
		--timeout 10 "$@" 2>&1 | sed 's/^/    /' || true
	echo "    (expected: $expect)"
}

# Where message 1 landed: the backend's copy, with backstop's Received: header on top.
show_mailbox() {
	local f
	for _ in $(seq 50); do
		f=$(ls "$RUN"/mailbox/* 2>/dev/null | head -1) && [ -n "$f" ] && break
		sleep 0.1
	done
	if [ -z "${f:-}" ]; then echo "    (no message in $RUN/mailbox)"; return; fi
	echo "    the backend stored it as $f:"
	sed 's/^/    | /' "$f"
}

main() {
	install_missing
	build
	start_backend
	start_backstop
	swaks_demo "1. a message for an existing user, delivered in-line to the backend" \
		"RCPT 250 2.1.5; end of DATA 250 with the backend's own answer" \
		--to bob@example.test --body "Hello from the backstop demo."
	show_mailbox
	swaks_demo "2. a message for a user who does not exist" \
		"RCPT refused: 550 5.1.1 User unknown, in the session: the sender's server tells its user; nobody bounces" \
		--to nobody@example.test --body "This one never gets past RCPT."
	say "3. backstop verify explains both verdicts"
	"$BUILD/backstop" verify -c "$CONF" bob@example.test nobody@example.test 2>&1 | sed 's/^/    /' || true
	echo "    (exit status 1: at least one address is invalid)"
	swaks_demo "4. relay attempt to a foreign domain" "RCPT refused: 554 5.7.1 Relay access denied" \
		--to victim@elsewhere.test --quit-after RCPT
	swaks_demo "5. address-form relay trick (percent hack through our domain)" \
		"RCPT refused: 550 5.7.1" --to 'victim%elsewhere.test@example.test' --quit-after RCPT
	stop_backend
	swaks_demo "6. the same message while the backend is down" \
		"4xx (try again later): never 250 unless a backend accepted; no bounce is ever sent" \
		--to bob@example.test --body "Hello again."
	stop_all
	say "backstop's log (one line per decision)"
	sed 's/^/    /' "$RUN/backstop.log"
}

main "$@"
