"""Signals: SIGHUP reloads the config atomically (a broken file is refused and the old config
keeps working); SIGTERM stops accepting and lets open sessions finish."""
import signal
import socket
import time

import pytest


def rcpt_code(b, addr):
    with b.connect() as c:
        c.ehlo()
        c.cmd("MAIL FROM:<a@client.test>")
        return c.cmd(f"RCPT TO:<{addr}>").code


def poll(fn, timeout=10.0, interval=0.05):
    """Call fn until it returns truthy or the deadline passes; returns the last value."""
    deadline = time.monotonic() + timeout
    while True:
        v = fn()
        if v or time.monotonic() >= deadline:
            return v
        time.sleep(interval)  # polling a condition, not synchronising on time


def test_reload_adds_domain(backstop_factory, backend):
    b = backstop_factory()
    assert rcpt_code(b, "user@other.test") == 554
    with b.connect() as old:                      # a session open across the reload
        old.ehlo()
        b.conf.write_text(backstop_factory.render(domains={
            "example.test": {"deliver": backend.addr},
            "other.test": {"deliver": backend.addr}}))
        b.send_signal(signal.SIGHUP)
        assert poll(lambda: rcpt_code(b, "user@other.test") == 250), b.log_text()
        assert rcpt_code(b, "user@example.test") == 250
        assert old.cmd("MAIL FROM:<a@client.test>").code == 250
        assert old.cmd("RCPT TO:<user@example.test>").code == 250
    assert b.alive()


def test_reload_refuses_broken_file(backstop_factory, backend):
    b = backstop_factory(domains={"example.test": {"deliver": backend.addr},
                                  "other.test": {"deliver": backend.addr}})
    good = b.conf.read_text()
    broken = good + "\n[gateway]\nmax_recipients = lots\n"
    bad_line = broken.count("\n")                 # the line of "max_recipients = lots"
    b.conf.write_text(broken)
    mark = b.mark()
    b.send_signal(signal.SIGHUP)
    line = b.wait_log(rf"{b.conf}:{bad_line}:", start=mark).string
    assert b.alive(), line
    assert rcpt_code(b, "user@other.test") == 250          # the old config still serves
    assert rcpt_code(b, "user@evil.test") == 554
    # and a fixed file is taken on the next HUP
    b.conf.write_text(backstop_factory.render())
    b.send_signal(signal.SIGHUP)
    assert poll(lambda: rcpt_code(b, "user@other.test") == 554), b.log_text()


def test_reload_missing_file_keeps_running(backstop_factory):
    b = backstop_factory()
    b.conf.rename(b.conf.with_suffix(".gone"))
    mark = b.mark()
    b.send_signal(signal.SIGHUP)
    b.wait_log(str(b.conf), start=mark)
    assert rcpt_code(b, "user@example.test") == 250
    b.conf.with_suffix(".gone").rename(b.conf)


def reload_lines(b):
    """SIGHUP, wait for the reload to finish; returns the log lines it wrote."""
    mark = b.mark()
    b.send_signal(signal.SIGHUP)
    b.wait_log(r"configuration reloaded", start=mark)
    return b.log[mark:]


def restart_warnings(lines):
    return [l for l in lines if "next restart" in l]


def test_reload_restart_warning_compares_with_running_values(backstop_factory):
    """The "needs a restart" warning compares the file with what runs, not with the last file
    loaded: a change not applied is reported at every reload, restoring the running value is not."""
    b = backstop_factory(gateway={"workers": 2})
    running = b.conf.read_text()
    b.conf.write_text(backstop_factory.render(gateway={"workers": 3}))
    first = restart_warnings(reload_lines(b))
    assert len(first) == 1, first
    again = restart_warnings(reload_lines(b))            # unchanged file: still not applied
    assert len(again) == 1, again
    b.conf.write_text(running)                            # back to the running value
    assert restart_warnings(reload_lines(b)) == []
    # the warning names the keys that differ, and only those
    assert "workers" in first[0] and "listen" not in first[0] and "cache" not in first[0], first
    b.conf.write_text(backstop_factory.render(gateway={"listen": "127.0.0.1:1"}))
    both = restart_warnings(reload_lines(b))
    assert len(both) == 1 and "listen" in both[0] and "workers" not in both[0], both
    assert rcpt_code(b, "user@example.test") == 250       # still serving on the running listener


def connect_refused(b):
    try:
        s = socket.create_connection((b.host, b.port), timeout=2)
    except (ConnectionRefusedError, OSError):
        return True
    try:
        # a listener that is closing may still accept then drop; a 220 means still serving
        s.settimeout(2)
        data = s.recv(512)
        return not data.startswith(b"220")
    except OSError:
        return True
    finally:
        s.close()


def test_graceful_stop(backstop_factory):
    b = backstop_factory(gateway={"shutdown_timeout": "10s"})
    c = b.connect()
    c.ehlo()
    assert c.cmd("MAIL FROM:<a@client.test>").code == 250
    b.send_signal(signal.SIGTERM)
    assert poll(lambda: connect_refused(b)), "still accepting after SIGTERM"
    assert b.alive(), "exited before the open session finished"
    assert c.cmd("RCPT TO:<user@example.test>").code == 250   # the open session completes
    assert c.cmd("QUIT").code == 221
    c.close()
    assert b.proc.wait(10) == 0
    # check_clean_exit at teardown re-checks status and sanitizer output


def test_shutdown_timeout_closes_idle_sessions(backstop_factory):
    b = backstop_factory(gateway={"shutdown_timeout": "1s", "command_timeout": "60s"})
    c = b.connect()
    c.ehlo()
    b.send_signal(signal.SIGTERM)
    rc = b.proc.wait(15)          # within shutdown_timeout: command_timeout (60 s) is far past it
    assert rc == 0
    r = c.reply()                 # the idle client is told, then disconnected
    assert (r.code, r.enhanced) == (421, "4.3.2"), r
    assert c.closed()
    c.close()


def test_sigint_also_stops(backstop_factory):
    b = backstop_factory()
    b.send_signal(signal.SIGINT)
    assert b.proc.wait(10) == 0
