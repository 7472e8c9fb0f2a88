#!/bin/bash
# tests/package/test-deb.sh - the Debian package end to end: build it (make deb; DEB=FILE uses a
# built one), lintian (no error; warnings shown), install it, start the service, check `backstop
# status` and `backstop reload` through the control socket, reinstall the same version and
# upgrade to a bumped one (the same .deb repacked with a higher version), purge it.
# With systemd as PID 1 the service is started with systemctl. Without it (CI's containers) the
# packaged binary is started directly, as the packaged unit would: user backstop, the packaged
# configuration, /run/backstop made as RuntimeDirectory= would; the script says which.
# Needs root and touches the system (a package, a user, /etc/backstop): for CI's fresh machine or
# a throwaway one. Everything it made is removed at the end, whatever happens; every wait is
# bounded. Exit 0 when every check passed.
set -euo pipefail
cd "$(dirname "$0")/../.."

[ "$(id -u)" -eq 0 ] || { echo "test-deb: needs root (it installs the package)" >&2; exit 1; }
if dpkg-query -W -f='${Status}' backstop 2>/dev/null | grep -q "ok installed"; then
	echo "test-deb: backstop is installed on this machine; not replacing it" >&2
	exit 1
fi

work=$(mktemp -d /tmp/backstop-deb-test.XXXXXX)
user_existed=no
getent passwd backstop >/dev/null && user_existed=yes
daemon_pid=
use_systemd=no
[ -d /run/systemd/system ] && use_systemd=yes

step() { echo "== test-deb: $*"; }
fail() { echo "test-deb: FAILED: $*" >&2; [ -f "$work/daemon.log" ] && tail -30 "$work/daemon.log" >&2; exit 1; }

cleanup() {
	set +e
	if [ -n "$daemon_pid" ] && kill -0 "$daemon_pid" 2>/dev/null; then
		kill -TERM "$daemon_pid"
		for _ in $(seq 50); do kill -0 "$daemon_pid" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$daemon_pid" 2>/dev/null
	fi
	[ "$use_systemd" = yes ] && systemctl stop backstop.service 2>/dev/null
	dpkg-query -W backstop >/dev/null 2>&1 && dpkg --purge backstop >/dev/null 2>&1
	[ "$use_systemd" = no ] && rm -rf /run/backstop
	if [ "$user_existed" = no ] && getent passwd backstop >/dev/null; then
		deluser --system backstop >/dev/null 2>&1
		getent group backstop >/dev/null && delgroup --system backstop >/dev/null 2>&1
	fi
	rm -rf "$work"
}
trap cleanup EXIT

free_port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# ---- build and lint ----
if [ -z "${DEB:-}" ]; then
	step "building the package (make deb)"
	make --no-print-directory deb > "$work/build.log" 2>&1 || { tail -40 "$work/build.log"; fail "make deb"; }
	DEB=$(ls -t backstop_*_"$(dpkg-architecture -qDEB_HOST_ARCH)".deb | head -1)
fi
[ -f "$DEB" ] || fail "no package $DEB"
version=$(dpkg-deb -f "$DEB" Version)
step "lintian $DEB"
lintian --pedantic "$DEB" 2>&1 | grep -v "running with root privileges" | tee "$work/lintian.log" || true
if grep -q "^E:" "$work/lintian.log"; then fail "lintian reports errors"; fi
echo "lintian: $(grep -c '^W:' "$work/lintian.log" || true) warnings, no error"

# ---- install ----
step "installing $DEB (version $version)"
dpkg -i "$DEB" > "$work/dpkg.log" 2>&1 || { cat "$work/dpkg.log"; fail "dpkg -i"; }
getent passwd backstop >/dev/null || fail "no user backstop"
[ "$(stat -c '%U:%G %a' /var/lib/backstop)" = "backstop:backstop 750" ] || fail "/var/lib/backstop: $(stat -c '%U:%G %a' /var/lib/backstop)"
[ "$(stat -c '%U:%G %a' /etc/backstop/backstop.conf)" = "root:backstop 640" ] || fail "backstop.conf: $(stat -c '%U:%G %a' /etc/backstop/backstop.conf)"
dpkg-query -W -f='${Conffiles}\n' backstop | grep -q "/etc/backstop/backstop.conf" || fail "backstop.conf is not a conffile"
for f in /usr/sbin/backstop /lib/systemd/system/backstop.service /lib/systemd/system/backstop-sync.timer \
	/usr/share/man/man8/backstop.8.gz /usr/share/man/man5/backstop.conf.5.gz; do
	[ -e "$f" ] || fail "$f missing"
done
[ -L /etc/systemd/system/multi-user.target.wants/backstop.service ] || fail "backstop.service is not enabled"
/usr/sbin/backstop --version | grep -q "backstop" || fail "backstop --version"

# ---- a configuration of our own: loopback ports, a map, the packaged control socket ----
port=$(free_port)
backend=$(free_port)
echo "alice@example.test OK" > /var/lib/backstop/users
cat > /etc/backstop/backstop.conf <<CONF
# written by tests/package/test-deb.sh
[gateway]
listen = 127.0.0.1:$port
hostname = mx.example.test
workers = 2
log = stderr
shutdown_timeout = 3s

[domain example.test]
deliver = 127.0.0.1:$backend
verify = map:/var/lib/backstop/users
CONF
runuser -u backstop -- /usr/sbin/backstop check-config -c /etc/backstop/backstop.conf || fail "check-config"

start_daemon() {
	if [ "$use_systemd" = yes ]; then
		systemctl start backstop.service || { journalctl -u backstop --no-pager | tail -20; fail "systemctl start"; }
	else
		install -d -o backstop -g backstop -m 0750 /run/backstop
		# setpriv execs the daemon itself (runuser would stay as its parent and turn TERM into 143)
		setpriv --reuid=backstop --regid=backstop --init-groups \
			/usr/sbin/backstop run -c /etc/backstop/backstop.conf >> "$work/daemon.log" 2>&1 &
		daemon_pid=$!
	fi
	for _ in $(seq 100); do
		/usr/sbin/backstop status > "$work/status" 2>&1 && return 0
		sleep 0.1
	done
	cat "$work/status"
	fail "backstop status did not answer within 10 s"
}

stop_daemon() {
	if [ "$use_systemd" = yes ]; then
		systemctl stop backstop.service
	elif [ -n "$daemon_pid" ]; then
		kill -TERM "$daemon_pid"
		wait "$daemon_pid" || fail "the daemon exited with status $?"
		daemon_pid=
	fi
}

if [ "$use_systemd" = yes ]; then
	step "starting backstop.service with systemctl"
else
	step "no systemd as PID 1 here: starting the packaged /usr/sbin/backstop directly as user backstop with /etc/backstop/backstop.conf and /run/backstop (what backstop.service does)"
fi
start_daemon
grep -q "^version: ${version%%-*}" "$work/status" || fail "status: $(cat "$work/status")"
grep -q "^generation: 1 " "$work/status" || fail "status: $(cat "$work/status")"
grep -Eq "^  source=map:[^ ]+ .* entries=1( |$)" "$work/status" || fail "status: $(cat "$work/status")"
[ "$(stat -c '%U:%G %a' /run/backstop/control)" = "backstop:backstop 660" ] || fail "control socket: $(stat -c '%U:%G %a' /run/backstop/control)"
runuser -u backstop -- /usr/sbin/backstop status > /dev/null || fail "status as a member of group backstop"
nobody_rc=0
runuser -u nobody -- /usr/sbin/backstop status > "$work/nobody" 2>&1 || nobody_rc=$?
[ "$nobody_rc" -eq 4 ] || fail "user nobody got exit $nobody_rc from status: $(cat "$work/nobody")"
/usr/sbin/backstop reload | grep -q "reload applied" || fail "backstop reload"
/usr/sbin/backstop status | grep -q "^generation: 2 " || fail "generation after reload"
echo "status, reload and access control answer through /run/backstop/control"

# ---- upgrade over itself: the same version again, then a higher one ----
step "reinstalling $version over itself"
dpkg -i --force-confold "$DEB" > "$work/dpkg.log" 2>&1 || { cat "$work/dpkg.log"; fail "reinstall"; }
grep -q "written by tests/package/test-deb.sh" /etc/backstop/backstop.conf || fail "the edited conffile was replaced"
[ "$(stat -c '%U:%G %a' /etc/backstop/backstop.conf)" = "root:backstop 640" ] || fail "conffile permissions after reinstall"
step "upgrading to $version+test1 (the package repacked with a higher version)"
dpkg-deb -R "$DEB" "$work/pkg"
sed -i "s/^Version: .*/Version: $version+test1/" "$work/pkg/DEBIAN/control"
dpkg-deb --root-owner-group -b "$work/pkg" "$work/backstop_bumped.deb" > /dev/null
dpkg -i --force-confold "$work/backstop_bumped.deb" > "$work/dpkg.log" 2>&1 || { cat "$work/dpkg.log"; fail "upgrade"; }
[ "$(dpkg-query -W -f='${Version}' backstop)" = "$version+test1" ] || fail "not upgraded"
grep -q "written by tests/package/test-deb.sh" /etc/backstop/backstop.conf || fail "the edited conffile was replaced"
if [ "$use_systemd" = yes ]; then
	systemctl is-active --quiet backstop.service || fail "the upgrade did not restart the service"
else
	stop_daemon # as the unit's try-restart would: the upgraded binary
	start_daemon
fi
/usr/sbin/backstop status | grep -q "^generation: 1 " || fail "status after the upgrade"
stop_daemon

# ---- purge ----
step "purging"
dpkg --purge backstop > "$work/dpkg.log" 2>&1 || { cat "$work/dpkg.log"; fail "purge"; }
for f in /usr/sbin/backstop /etc/backstop /var/lib/backstop /lib/systemd/system/backstop.service \
	/etc/systemd/system/multi-user.target.wants/backstop.service; do
	[ ! -e "$f" ] || fail "$f is still there after purge"
done
! dpkg-statoverride --list /etc/backstop/backstop.conf >/dev/null || fail "the statoverride is still there"
echo "test-deb: all checks passed ($([ "$use_systemd" = yes ] && echo systemd || echo "daemon started directly: no systemd"))"
