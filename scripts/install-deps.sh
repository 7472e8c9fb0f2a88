#!/bin/bash
# Install every Debian 12 package that building and testing backstop needs (one list, used by
# .ci/run and by `make test`). With --if-missing, nothing is done when all are installed.
# System postfix/slapd/nsd are installed for their programs only and never started: the tests
# start their own instances on 127.0.0.1 with their own configuration under a temp dir.
set -euo pipefail

PACKAGES=(
	build-essential meson ninja-build pkg-config clang-14 libclang-rt-14-dev
	libevent-dev libssl-dev liblmdb-dev libc-ares-dev libldap2-dev libinih-dev
	libcmocka-dev python3-pytest python3-pytest-timeout swaks libnet-ssleay-perl postfix slapd ldap-utils
	lmdb-utils openssl nsd prometheus chromium haproxy libhiredis-dev redis-server redis-sentinel
	debhelper dpkg-dev lintian adduser groff-base
)

if [ "${1:-}" = "--if-missing" ]; then
	missing=()
	for p in "${PACKAGES[@]}"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
	done
	[ ${#missing[@]} -eq 0 ] && exit 0
	echo "install-deps: missing: ${missing[*]}"
fi
if [ "$(id -u)" -ne 0 ]; then
	echo "install-deps: run as root (or install: ${PACKAGES[*]})" >&2
	exit 1
fi

export DEBIAN_FRONTEND=noninteractive
# Keep package scripts from starting daemons while installing (policy-rc.d 101 = "not allowed").
policy=/usr/sbin/policy-rc.d
made_policy=
if [ ! -e "$policy" ]; then
	printf '#!/bin/sh\nexit 101\n' > "$policy"
	chmod 755 "$policy"
	made_policy=1
fi
cleanup() { if [ -n "$made_policy" ]; then rm -f "$policy"; fi; }
trap cleanup EXIT

apt-get update
echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
echo "postfix postfix/mailname string backstop-ci.invalid" | debconf-set-selections
apt-get install -y --no-install-recommends "${PACKAGES[@]}"
