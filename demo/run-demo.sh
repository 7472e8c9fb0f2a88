#!/bin/bash
# make demo: build backstop, start it on loopback with demo/backstop.conf, and show with swaks
#   1. a message for a domain we serve (RCPT accepted; DATA answered by the backend in-line),
#   2. a relay attempt to a foreign domain refused at RCPT,
#   3. an address-form relay trick (percent hack) refused at RCPT;
# then stop backstop. Installs missing packages with apt-get (needs root) only if any is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

BUILD=${BUILD:-build}
CONF=demo/backstop.conf
RUN=demo/run
NEEDED=(build-essential meson ninja-build pkg-config libevent-dev libssl-dev liblmdb-dev
	libc-ares-dev libldap2-dev libhiredis-dev libinih-dev libcmocka-dev swaks)
BACKSTOP_PID=

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
	DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
}

build() {
	say "building"
	make --no-print-directory build BUILD="$BUILD"
}

# A backend for in-line delivery will be started here (and stopped in stop_all) once in-line
# delivery lands; until then the end of DATA is answered 4xx by design.
start_backend() { :; }

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
}
trap stop_all EXIT

swaks_demo() {  # title, expected, swaks args...
	local title=$1 expect=$2; shift 2
	say "$title"
	swaks --server "$ADDR" --helo client.demo.test --from alice@client.demo.test \
		--timeout 10 "$@" 2>&1 | sed 's/^/    /' || true
	echo "    (expected: $expect)"
}

main() {
	install_missing
	build
	start_backend
	start_backstop
	swaks_demo "1. a message for a domain we serve" \
		"RCPT 250 2.1.5; end of DATA 4xx while no backend answers" \
		--to bob@example.test --body "Hello from the backstop demo."
	swaks_demo "2. relay attempt to a foreign domain" "RCPT refused: 554 5.7.1 Relay access denied" \
		--to victim@elsewhere.test --quit-after RCPT
	swaks_demo "3. address-form relay trick (percent hack through our domain)" \
		"RCPT refused: 550 5.7.1" --to 'victim%elsewhere.test@example.test' --quit-after RCPT
	stop_all
	say "backstop's log (one line per decision)"
	sed 's/^/    /' "$RUN/backstop.log"
}

main "$@"
