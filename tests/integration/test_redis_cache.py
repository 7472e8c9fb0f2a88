"""cache = redis://: several gateways sharing verdicts in one redis-server started by the test on a
loopback port (and Sentinel failover over a master, a replica and three sentinels). A counting fake
validator shows what reaches it: a verdict learned on one gateway answers on the other without a
probe; purge on one is heard by the other; two gateways asked at once send one probe; Redis killed
under load never causes a 5xx, and the gateways recover when it returns."""
import subprocess
import threading
import time

import pytest

from callout_fixtures import dom, fake, gw  # noqa: F401  (fixture)
from conftest import run_cli
from peers import sink  # noqa: F401  (fixture)
from redis_fixture import redis, redis_factory, sentinel_factory  # noqa: F401  (fixtures)


def rcpt(b, addr, mail="sender@client.test"):
    with b.connect(timeout=15) as c:
        c.ehlo()
        assert c.cmd(f"MAIL FROM:<{mail}>").code == 250
        return c.cmd(f"RCPT TO:<{addr}>")


def two_gateways(backstop_factory, sink, v, cache, **over):
    g = gw(cache=cache, **over)
    d = dom(sink, v, recipient_delimiter="+")
    a = backstop_factory(gateway=g, domains=d, name="a.conf")
    b = backstop_factory(gateway=g, domains=d, name="b.conf")
    return a, b


def test_verdict_learned_on_one_answers_on_the_other(backstop_factory, sink, fake, redis):
    v = fake(known=["alice@example.test"])
    a, b = two_gateways(backstop_factory, sink, v, f"redis://127.0.0.1:{redis.port}/3",
                        cache_redis_prefix="mx")
    assert rcpt(a, "alice@example.test").code == 250
    assert rcpt(a, "nobody@example.test").code == 550
    probes = v.total_rcpts()  # the two, and the callout's catch-all test
    # in Redis, namespaced, with the TTL (positive 24h, negative 5m) set by Redis itself
    val = redis.wait_cli(lambda o: o.startswith("V"), "-n", 3, "GET", "backstop:mx:v:alice@example.test")
    assert val.endswith(f":callout:{v.addr}"), val
    ttl = int(redis.cli("-n", 3, "PTTL", "backstop:mx:v:nobody@example.test"))
    assert 250_000 < ttl <= 300_000, ttl
    r1, r2 = rcpt(b, "alice@example.test"), rcpt(b, "nobody@example.test")
    assert r1.code == 250 and r2.code == 550, (r1, r2)
    assert v.total_rcpts() == probes  # no probe from b
    b.wait_log(r"rcpt=<nobody@example.test> code=550 .*cached=yes")
    r = run_cli("cache", "-c", a.conf, "show", "alice@example.test")
    assert r.returncode == 0 and "alice@example.test: valid source=callout:" in r.stdout, r
    r = run_cli("cache", "-c", a.conf, "show", "zed@example.test")
    assert r.returncode == 0 and "not cached" in r.stdout, r


def test_purge_on_one_is_seen_on_the_other(backstop_factory, sink, fake, redis):
    v = fake(known=["bob@example.test"])
    a, b = two_gateways(backstop_factory, sink, v, f"redis://127.0.0.1:{redis.port}",
                        cache_redis_local_ttl="1h")  # only a purge can make b forget
    for addr in ("bob@example.test", "bob+x@example.test"):
        assert rcpt(a, addr).code == 250
        assert rcpt(b, addr).code == 250  # now in b's local layer
    assert v.total_rcpts("bob") == 2
    mark = b.mark()
    r = run_cli("cache", "-c", a.conf, "purge", "bob@example.test")
    assert r.returncode == 0 and "2 entries removed" in r.stdout, r
    assert redis.cli("EXISTS", "backstop:v:bob+x@example.test") == "0"
    b.wait_log(r"purge of bob@example.test heard: 2 local entries dropped", start=mark)
    assert rcpt(b, "bob@example.test").code == 250
    assert v.total_rcpts("bob") == 3  # b asked again
    r = run_cli("cache", "-c", b.conf, "flush")
    assert r.returncode == 0, r
    a.wait_log(r"flush heard")
    # no verdict left (the shared callout_max_rate's counter of this second, r:..., is not one)
    assert redis.cli("EVAL", "return #redis.call('KEYS', ARGV[1])", 0, "backstop:[vl]:*") == "0"


def test_two_gateways_one_probe(backstop_factory, sink, fake, redis):
    v = fake(known=["carol@example.test"], rcpt_delay=0.5)
    a, b = two_gateways(backstop_factory, sink, v, f"redis://127.0.0.1:{redis.port}")
    results, barrier = [], threading.Barrier(8)

    def one(gwy):
        barrier.wait(10)
        results.append(rcpt(gwy, "carol@example.test").code)
    threads = [threading.Thread(target=one, args=(g,)) for g in (a, b) * 4]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert results == [250] * 8, results
    assert v.total_rcpts("carol") == 1, dict(v.rcpts)


def test_redis_killed_mid_load_then_back(backstop_factory, sink, fake, redis):
    v = fake(known=[f"u{i}@example.test" for i in range(20)])
    a, b = two_gateways(backstop_factory, sink, v, f"redis://127.0.0.1:{redis.port}",
                        cache_redis_local_ttl="1s", cache_redis_timeout="200ms")
    for i in range(20):
        assert rcpt(a if i % 2 else b, f"u{i}@example.test").code == 250
    probes = v.total_rcpts()
    codes, stop = [], threading.Event()

    def load(gwy, k):
        n = 0
        while not stop.is_set():
            codes.append(rcpt(gwy, f"u{(n * 2 + k) % 20}@example.test").code)
            n += 1
    threads = [threading.Thread(target=load, args=(g, k)) for k, g in enumerate((a, b))]
    for t in threads:
        t.start()
    mark_a = a.mark()
    redis.kill()
    a.wait_log(r"Redis unreachable", start=mark_a)
    n_before = len(codes)
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline and len(codes) < n_before + 40:
        time.sleep(0.05)  # let the load run while Redis is away
    stop.set()
    for t in threads:
        t.join(30)
    assert len(codes) >= n_before + 40, "the gateways stopped answering"
    assert set(codes) == {250}, sorted(set(codes))  # never a 5xx (nor a 4xx) because of Redis
    assert len([l for l in a.log if "Redis unreachable" in l]) == 1  # logged once
    # new addresses while Redis is away: the sources answer, verdicts kept locally
    assert rcpt(a, "nobody1@example.test").code == 550
    assert rcpt(a, "nobody1@example.test").code == 550
    assert v.total_rcpts("nobody1") == 1
    # Redis comes back on the same port: the gateways use it again without a restart
    mark_a = a.mark()
    redis.start()
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:  # the next lookups reconnect (backoff at most 5 s)
        rcpt(a, "u1@example.test")
        if redis.cli("EXISTS", "backstop:l:u1@example.test") == "1" or \
                [l for l in a.log[mark_a:] if "Redis reachable again" in l]:
            break
        time.sleep(0.1)
    a.wait_log(r"Redis reachable again", start=mark_a, timeout=10)
    assert rcpt(a, "nobody2@example.test").code == 550
    redis.wait_cli(lambda o: o.startswith("I"), "GET", "backstop:v:nobody2@example.test")
    assert probes <= v.total_rcpts()


def test_sentinel_failover_moves_the_gateways(backstop_factory, sink, fake, redis_factory, sentinel_factory):
    master = redis_factory(name="master")
    replica = redis_factory(name="replica", replicaof=master.port)
    replica.wait_cli(lambda o: "master_link_status:up" in o, "INFO", "replication")
    sentinels = [sentinel_factory(name=f"s{i}", master_port=master.port) for i in range(3)]
    spec = "redis+sentinel://" + ",".join(f"127.0.0.1:{s.port}" for s in sentinels) + "/mymaster/0"
    v = fake(known=["dave@example.test", "erin@example.test"])
    a, b = two_gateways(backstop_factory, sink, v, spec, cache_redis_local_ttl="0s")
    assert rcpt(a, "dave@example.test").code == 250
    master.wait_cli(lambda o: o.startswith("V"), "GET", "backstop:v:dave@example.test")
    replica.wait_cli(lambda o: o.startswith("V"), "GET", "backstop:v:dave@example.test")
    master.kill()
    deadline = time.monotonic() + 30
    while sentinels[0].master_port() != replica.port:
        assert time.monotonic() < deadline, "no failover within 30 s"
        time.sleep(0.1)  # polling Sentinel with a deadline
    # the gateways find the new master: a verdict learned on b lands there, a reads it
    deadline = time.monotonic() + 20
    while replica.cli("GET", "backstop:v:erin@example.test") == "":
        assert time.monotonic() < deadline, "the gateway did not move to the new master"
        assert rcpt(b, "erin@example.test").code == 250
        time.sleep(0.2)
    # each gateway's loops reconnect on their next lookups (backoff at most 5 s): both end up
    # answering from the new master, dave learned before the failover, erin after it
    for g, addr in ((a, "erin@example.test"), (a, "dave@example.test"), (b, "dave@example.test")):
        deadline = time.monotonic() + 20
        while True:
            mark = g.mark()
            assert rcpt(g, addr).code == 250
            if [l for l in g.log[mark:] if "cached=yes" in l]:
                break
            assert time.monotonic() < deadline, f"{g.conf.name} does not read {addr} from the new master"
            time.sleep(0.2)


@pytest.fixture(scope="module")
def redis_tls_files(tmp_path_factory):
    """A self-signed certificate for localhost (and 127.0.0.1) and its key."""
    d = tmp_path_factory.mktemp("redis-tls")
    cert, key = d / "cert.pem", d / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-days", "2", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True, timeout=30)
    return cert, key


def test_rediss_with_password(backstop_factory, sink, fake, redis_factory, redis_tls_files, tmp_path):
    pw = tmp_path / "redis.pw"
    pw.write_text("s3cret-pw\n")
    r = redis_factory(name="tls", tls=redis_tls_files, extra=["--requirepass", "s3cret-pw"])
    v = fake(known=["frank@example.test"])
    a, b = two_gateways(backstop_factory, sink, v, f"rediss://localhost:{r.port}/2",
                        cache_redis_tls_ca=str(redis_tls_files[0]), cache_redis_password_file=str(pw))
    assert rcpt(a, "frank@example.test").code == 250
    r.wait_cli(lambda o: o.startswith("V"), "-n", 2, "GET", "backstop:v:frank@example.test")
    assert rcpt(b, "frank@example.test").code == 250
    assert v.total_rcpts("frank") == 1
    b.wait_log(r"rcpt=<frank@example.test> code=250 .*cached=yes")


def test_rediss_wrong_ca_never_refuses_mail(backstop_factory, sink, fake, redis_factory, redis_tls_files, tls_files):
    r = redis_factory(name="tls", tls=redis_tls_files)
    v = fake(known=["gina@example.test"])
    b = backstop_factory(gateway=gw(cache=f"rediss://localhost:{r.port}/0", cache_redis_tls_ca=str(tls_files[0])),
                         domains=dom(sink, v))
    assert rcpt(b, "gina@example.test").code == 250  # the source answers
    assert rcpt(b, "nobody@example.test").code == 550
    b.wait_log(r"Redis unreachable")
    assert r.cli("DBSIZE") == "0"


def test_check_config_and_stats(backstop_factory, redis, tmp_path):
    conf = tmp_path / "r.conf"
    conf.write_text(backstop_factory.render(gateway={"cache": f"redis://127.0.0.1:{redis.port}/1",
                                                     "cache_redis_prefix": "bad prefix"}))
    r = run_cli("check-config", "-c", conf)
    assert r.returncode != 0 and "cache_redis_prefix" in r.stdout + r.stderr, r
    conf.write_text(backstop_factory.render(gateway={"cache": f"redis://127.0.0.1:{redis.port}/1"}))
    r = run_cli("cache", "-c", conf, "stats")
    assert r.returncode == 0 and "redis_reachable=" in r.stdout and "local_slots=" in r.stdout, r


def test_metrics_show_redis_unreachable(backstop_factory, sink, fake, redis):
    """backstop_verdict_cache_up{store="redis"} is 0 while Redis is away, 1 again once it is back
    (the alert "verdict cache unavailable" of contrib/prometheus rests on it)."""
    import re
    import urllib.request
    v = fake(known=["u1@example.test"])
    b = backstop_factory(gateway=gw(cache=f"redis://127.0.0.1:{redis.port}", cache_redis_timeout="200ms",
                                    metrics_listen="127.0.0.1:0"), domains=dom(sink, v))
    addr = re.search(r"ready metrics_listen=(\S+)", b.wait_log(r"ready metrics_listen=").string).group(1)

    def up():
        with urllib.request.urlopen(f"http://{addr}/metrics", timeout=10) as r:
            m = re.search(r'^backstop_verdict_cache_up\{store="redis"\} (\S+)$', r.read().decode(), re.M)
        assert m, "no backstop_verdict_cache_up{store=\"redis\"}"
        return float(m.group(1))
    assert rcpt(b, "u1@example.test").code == 250
    assert up() == 1
    mark = b.mark()
    redis.kill()
    assert rcpt(b, "u2@example.test").code in (250, 550)
    b.wait_log(r"Redis unreachable", start=mark)
    assert up() == 0
    mark = b.mark()
    redis.start()
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and not [l for l in b.log[mark:] if "Redis reachable again" in l]:
        rcpt(b, "u1@example.test")  # the next lookups reconnect (backoff at most 5 s)
        time.sleep(0.1)
    b.wait_log(r"Redis reachable again", start=mark, timeout=10)
    assert up() == 1
