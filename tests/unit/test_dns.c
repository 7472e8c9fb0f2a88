/* test_dns.c - dns_resolve_host(), dns_query_txt() and dns_lookup() without the Internet:
 * numeric hosts, "localhost" from /etc/hosts, names under .invalid, and a fake DNS server on
 * 127.0.0.1 (UDP, same event loop) answering A, AAAA, MX, PTR, TXT, CNAME chains, NXDOMAIN and
 * NODATA with an SOA, SERVFAIL, or staying silent. Callbacks must come from the loop, cancelled
 * queries and freed resolvers must stay quiet, no fd may leak; the cache keeps answers by
 * their TTL (negative ones by the SOA), never failures, within its bound. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/event.h>

#include "dns.h"
#include "dns_cache.h"
#include "util.h"
#include "unit_support.h"

/* ---- a fake DNS server ---- */

struct fakedns {
	int fd;
	struct event *ev;
	int port;
	int queries;
};

static size_t put16(unsigned char *p, unsigned v)
{
	p[0] = (unsigned char)(v >> 8);
	p[1] = (unsigned char)v;
	return 2;
}

/* One record owned by the name at offset owner (a compression pointer), with ttl. */
static size_t put_rr_at(unsigned char *p, unsigned owner, unsigned type, unsigned ttl, const void *rdata, size_t rdlen)
{
	size_t n = put16(p, 0xc000 | owner);
	n += put16(p + n, type);
	n += put16(p + n, 1);
	n += put16(p + n, ttl >> 16);
	n += put16(p + n, ttl & 0xffff);
	n += put16(p + n, (unsigned)rdlen);
	memcpy(p + n, rdata, rdlen);
	return n + rdlen;
}

/* One answer record pointing at the question's name. */
static size_t put_rr(unsigned char *p, unsigned type, const void *rdata, size_t rdlen)
{
	return put_rr_at(p, 12, type, 60, rdata, rdlen);
}

/* "a.b" in wire form; returns its length. */
static size_t put_name(unsigned char *p, const char *name)
{
	size_t n = 0;
	while (*name) {
		size_t l = strcspn(name, ".");
		p[n++] = (unsigned char)l;
		memcpy(p + n, name, l);
		n += l;
		name += l + (name[l] == '.');
	}
	p[n++] = 0;
	return n;
}

/* An SOA (owner: the question's name) with ttl and minimum, for the authority section. */
static size_t put_soa(unsigned char *p, unsigned ttl, unsigned minimum)
{
	unsigned char rd[64];
	size_t n = put_name(rd, "ns.test");
	n += put_name(rd + n, "admin.test");
	for (int i = 0; i < 4; i++)
		n += put16(rd + n, 0), n += put16(rd + n, 100);
	n += put16(rd + n, minimum >> 16);
	n += put16(rd + n, minimum & 0xffff);
	return put_rr_at(p, 12, 6, ttl, rd, n);
}

/* The question's name as "a.b.c" and the end of the question; 0 on garbage. */
static size_t parse_question(const unsigned char *q, size_t len, char *name, size_t namesz, unsigned *type)
{
	size_t at = 12, o = 0;
	while (at < len && q[at] != 0) {
		size_t l = q[at++];
		if (l > 63 || at + l > len || o + l + 2 > namesz)
			return 0;
		if (o)
			name[o++] = '.';
		memcpy(name + o, q + at, l);
		o += l;
		at += l;
	}
	name[o] = '\0';
	if (at + 5 > len)
		return 0;
	*type = (unsigned)(q[at + 1] << 8 | q[at + 2]);
	return at + 5;
}

static void fakedns_read(evutil_socket_t fd, short what, void *arg)
{
	struct fakedns *d = arg;
	unsigned char q[512], r[1024];
	struct sockaddr_storage from;
	socklen_t fromlen = sizeof from;
	ssize_t len = recvfrom(fd, q, sizeof q, 0, (struct sockaddr *)&from, &fromlen);
	char name[256];
	unsigned type = 0;
	size_t qend = len > 12 ? parse_question(q, (size_t)len, name, sizeof name, &type) : 0;
	if (qend == 0)
		return;
	d->queries++;
	if (strcasecmp(name, "silent.test") == 0)
		return;
	memcpy(r, q, qend);
	size_t n = qend, an = 0, ns = 0;
	int rcode = 0;
	if (strcasecmp(name, "fail.test") == 0) {
		rcode = 2; /* SERVFAIL */
	} else if (strcasecmp(name, "nodata.test") == 0) {
		n += put_soa(r + n, 300, 30);
		ns = 1;
	} else if (strcasecmp(name, "nx.test") == 0) {
		n += put_soa(r + n, 120, 600);
		ns = 1;
		rcode = 3;
	} else if (strcasecmp(name, "mail.test") == 0 && type == 15) {
		unsigned char mx[32];
		size_t l = put16(mx, 10);
		l += put_name(mx + l, "mx.test");
		n += put_rr_at(r + n, 12, 15, 3600, mx, l);
		mx[1] = 20;
		l = 2 + put_name(mx + 2, "MX2.Test");
		n += put_rr_at(r + n, 12, 15, 120, mx, l);
		an = 2;
	} else if (strcasecmp(name, "1.2.0.192.in-addr.arpa") == 0 && type == 12) {
		unsigned char ptr[32];
		size_t l = put_name(ptr, "mx.test");
		n += put_rr(r + n, 12, ptr, l);
		an = 1;
	} else if (strcasecmp(name, "alias.test") == 0) {
		/* the target's records first, then the CNAME to it: order is not meaningful */
		unsigned char target[32];
		size_t l = put_name(target, "spf.test");
		size_t at = n;
		static const char t1[] = "\015v=spf1 -all x";
		unsigned char rd[4 + 40];
		memcpy(rd, t1, sizeof t1 - 1);
		/* owner of the TXT: the CNAME's target, written in the CNAME's rdata below */
		size_t cname_rdata = at + 12 + (sizeof t1 - 1) + 12;
		n += put_rr_at(r + n, (unsigned)cname_rdata, 16, 500, rd, sizeof t1 - 1);
		n += put_rr_at(r + n, 12, 5, 90, target, l);
		an = 2;
	} else if (strcasecmp(name, "mx.test") == 0 && type == 1) {
		unsigned char a[4] = { 192, 0, 2, 1 };
		n += put_rr(r + n, 1, a, 4);
		an = 1;
	} else if (strcasecmp(name, "mx.test") == 0 && type == 28) {
		unsigned char a6[16];
		inet_pton(AF_INET6, "2001:db8::1", a6);
		n += put_rr(r + n, 28, a6, 16);
		an = 1;
	} else if (strcasecmp(name, "spf.test") == 0 && type == 16) {
		static const char t1[] = "\007v=spf1 \004-all";   /* one record, two strings */
		static const char t2[] = "\014other=record";    /* a second record */
		n += put_rr(r + n, 16, t1, sizeof t1 - 1);
		n += put_rr(r + n, 16, t2, sizeof t2 - 1);
		an = 2;
	} else if (strcasecmp(name, "mx.test") != 0 && strcasecmp(name, "spf.test") != 0) {
		rcode = 3; /* NXDOMAIN */
	}
	put16(r + 2, 0x8180 | (unsigned)rcode);
	put16(r + 4, 1);
	put16(r + 6, (unsigned)an);
	put16(r + 8, (unsigned)ns);
	put16(r + 10, 0);
	sendto(fd, r, n, 0, (struct sockaddr *)&from, fromlen);
}

static void fakedns_start(struct fakedns *d, struct event_base *base)
{
	d->fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	struct sockaddr_in sin = { .sin_family = AF_INET };
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(d->fd, (struct sockaddr *)&sin, sizeof sin), 0);
	socklen_t len = sizeof sin;
	getsockname(d->fd, (struct sockaddr *)&sin, &len);
	d->port = ntohs(sin.sin_port);
	d->ev = event_new(base, d->fd, EV_READ | EV_PERSIST, fakedns_read, d);
	event_add(d->ev, NULL);
}

static void fakedns_stop(struct fakedns *d)
{
	if (d->ev) {
		event_free(d->ev);
		close(d->fd);
	}
	memset(d, 0, sizeof *d);
}

/* ---- harness ---- */

struct t {
	struct event_base *base;
	struct dns_resolver *r;
	struct fakedns dns;
	int fds_before;
	int calls;
	struct dns_addrs addrs;
	enum dns_status txt_status;
	size_t txt_count;
	char txt[4][64];
	int want_calls;
};

static int setup(void **state)
{
	struct t *t = calloc(1, sizeof *t);
	t->fds_before = count_open_fds();
	t->base = event_base_new();
	t->want_calls = 1;
	*state = t;
	return 0;
}

static int teardown(void **state)
{
	struct t *t = *state;
	dns_resolver_free(t->r);
	fakedns_stop(&t->dns);
	event_base_free(t->base);
	int before = t->fds_before, after = count_open_fds();
	free(t);
	assert_int_equal(after, before);
	return 0;
}

static void addrs_cb(void *arg, const struct dns_addrs *res)
{
	struct t *t = arg;
	t->calls++;
	t->addrs = *res;
	if (t->calls == t->want_calls)
		event_base_loopbreak(t->base);
}

static void txt_cb(void *arg, const struct dns_txt *res)
{
	struct t *t = arg;
	t->calls++;
	t->txt_status = res->status;
	t->txt_count = res->count;
	for (size_t i = 0; i < res->count && i < 4; i++)
		snprintf(t->txt[i], sizeof t->txt[i], "%s", res->txt[i]);
	event_base_loopbreak(t->base);
}

static void guard(evutil_socket_t fd, short what, void *arg) { event_base_loopbreak(arg); }

/* Run the loop until a callback stops it or ms pass; returns the elapsed time. */
static uint64_t run(struct t *t, int ms)
{
	struct event *g = evtimer_new(t->base, guard, t->base);
	struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };
	evtimer_add(g, &tv);
	uint64_t t0 = now_ms();
	event_base_dispatch(t->base);
	event_free(g);
	return now_ms() - t0;
}

static void use_fake_dns(struct t *t, unsigned timeout_ms)
{
	fakedns_start(&t->dns, t->base);
	t->r = dns_resolver_new_opts(t->base, timeout_ms, 1, NULL);
	assert_non_null(t->r);
	char csv[64];
	snprintf(csv, sizeof csv, "127.0.0.1:%d", t->dns.port);
	assert_int_equal(dns_resolver_set_servers(t->r, csv), 0);
}

/* ---- tests ---- */

static void test_numeric(void **state)
{
	struct t *t = *state;
	t->r = dns_resolver_new(t->base);
	dns_resolve_host(t->r, "192.0.2.7", 2525, AF_UNSPEC, addrs_cb, t);
	assert_int_equal(t->calls, 0); /* never from inside the call */
	run(t, 2000);
	assert_int_equal(t->calls, 1);
	assert_int_equal(t->addrs.status, DNS_OK);
	assert_int_equal(t->addrs.count, 1);
	const struct sockaddr_in *sin = (const struct sockaddr_in *)&t->addrs.addr[0];
	assert_int_equal(sin->sin_family, AF_INET);
	assert_int_equal(ntohs(sin->sin_port), 2525);
	assert_int_equal(ntohl(sin->sin_addr.s_addr), 0xc0000207);

	static const char *const v6[] = { "::1", "[2001:db8::5]" };
	for (int i = 0; i < 2; i++) {
		t->calls = 0;
		dns_resolve_host(t->r, v6[i], 25, AF_UNSPEC, addrs_cb, t);
		run(t, 2000);
		assert_int_equal(t->addrs.status, DNS_OK);
		assert_int_equal(t->addrs.addr[0].ss_family, AF_INET6);
		assert_int_equal(t->addrs.addrlen[0], sizeof(struct sockaddr_in6));
		assert_int_equal(ntohs(((const struct sockaddr_in6 *)&t->addrs.addr[0])->sin6_port), 25);
	}
	t->calls = 0;
	dns_resolve_host(t->r, "::1", 25, AF_INET, addrs_cb, t);
	run(t, 2000);
	assert_int_equal(t->addrs.status, DNS_NOTFOUND);
}

static void test_localhost(void **state)
{
	struct t *t = *state;
	use_fake_dns(t, 2000);
	dns_resolve_host(t->r, "localhost", 25, AF_INET, addrs_cb, t);
	run(t, 5000);
	assert_int_equal(t->calls, 1);
	assert_int_equal(t->addrs.status, DNS_OK);
	assert_int_equal(t->dns.queries, 0); /* from /etc/hosts, without asking DNS */
	bool loopback = false;
	for (size_t i = 0; i < t->addrs.count; i++) {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)&t->addrs.addr[i];
		assert_int_equal(sin->sin_family, AF_INET);
		assert_int_equal(ntohs(sin->sin_port), 25);
		loopback |= ntohl(sin->sin_addr.s_addr) == INADDR_LOOPBACK;
	}
	assert_true(loopback);
}

static void test_invalid_fails_fast(void **state)
{
	struct t *t = *state;
	use_fake_dns(t, 2000);
	dns_resolve_host(t->r, "nonexistent.invalid", 25, AF_UNSPEC, addrs_cb, t);
	run(t, 5000);
	assert_int_equal(t->calls, 1);
	assert_int_equal(t->addrs.status, DNS_NOTFOUND);
	assert_int_equal(t->dns.queries, 0); /* answered without asking DNS: at once */
	t->calls = 0;
	dns_query_txt(t->r, "x.INVALID.", txt_cb, t);
	run(t, 5000);
	assert_int_equal(t->txt_status, DNS_NOTFOUND);
}

/* Through the system's resolver: whatever it says (it may be unreachable), it says it in time. */
static void test_system_resolver_bounded(void **state)
{
	struct t *t = *state;
	t->r = dns_resolver_new_opts(t->base, 300, 1, NULL);
	dns_resolve_host(t->r, "host.does-not-exist.test", 25, AF_UNSPEC, addrs_cb, t);
	uint64_t took = run(t, 8000);
	assert_int_equal(t->calls, 1);
	assert_true(t->addrs.status == DNS_NOTFOUND || t->addrs.status == DNS_TEMPFAIL);
	assert_non_null(t->addrs.error);
	assert_true(took < 8000);
}

static void test_fake_server_addresses(void **state)
{
	struct t *t = *state;
	use_fake_dns(t, 1000);
	dns_resolve_host(t->r, "mx.test", 587, AF_UNSPEC, addrs_cb, t);
	run(t, 5000);
	assert_int_equal(t->calls, 1);
	assert_int_equal(t->addrs.status, DNS_OK);
	assert_int_equal(t->addrs.count, 2);
	bool v4 = false, v6 = false;
	for (size_t i = 0; i < 2; i++) {
		if (t->addrs.addr[i].ss_family == AF_INET) {
			const struct sockaddr_in *sin = (const struct sockaddr_in *)&t->addrs.addr[i];
			v4 = ntohl(sin->sin_addr.s_addr) == 0xc0000201 && ntohs(sin->sin_port) == 587;
		} else {
			const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)&t->addrs.addr[i];
			char buf[64];
			inet_ntop(AF_INET6, &sin6->sin6_addr, buf, sizeof buf);
			v6 = strcmp(buf, "2001:db8::1") == 0 && ntohs(sin6->sin6_port) == 587;
		}
	}
	assert_true(v4 && v6);

	t->calls = 0;
	dns_resolve_host(t->r, "mx.test", 25, AF_INET, addrs_cb, t);
	run(t, 5000);
	assert_int_equal(t->addrs.count, 1);
	assert_int_equal(t->addrs.addr[0].ss_family, AF_INET);

	t->calls = 0;
	dns_resolve_host(t->r, "nope.test", 25, AF_UNSPEC, addrs_cb, t);
	run(t, 5000);
	assert_int_equal(t->calls, 1);
	assert_int_equal(t->addrs.status, DNS_NOTFOUND);
}

static void test_fake_server_txt(void **state)
{
	struct t *t = *state;
	use_fake_dns(t, 1000);
	dns_query_txt(t->r, "spf.test", txt_cb, t);
	run(t, 5000);
	assert_int_equal(t->calls, 1);
	assert_int_equal(t->txt_status, DNS_OK);
	assert_int_equal(t->txt_count, 2);
	assert_string_equal(t->txt[0], "v=spf1 -all");
	assert_string_equal(t->txt[1], "other=record");

	t->calls = 0;
	dns_query_txt(t->r, "nope.test", txt_cb, t);
	run(t, 5000);
	assert_int_equal(t->txt_status, DNS_NOTFOUND);
}

static void test_timeout(void **state)
{
	struct t *t = *state;
	use_fake_dns(t, 200);
	dns_resolve_host(t->r, "silent.test", 25, AF_INET, addrs_cb, t);
	uint64_t took = run(t, 5000);
	assert_int_equal(t->calls, 1);
	assert_int_equal(t->addrs.status, DNS_TEMPFAIL);
	assert_int_equal(t->dns.queries, 1); /* one try, then the timeout answered */
	assert_true(took >= 150);             /* not before the timeout */
}

static void test_cancel(void **state)
{
	struct t *t = *state;
	use_fake_dns(t, 1000);
	t->want_calls = 2;
	struct dns_query *a = dns_resolve_host(t->r, "127.0.0.1", 25, AF_UNSPEC, addrs_cb, t);
	struct dns_query *b = dns_resolve_host(t->r, "mx.test", 25, AF_UNSPEC, addrs_cb, t);
	struct dns_query *c = dns_resolve_host(t->r, "nonexistent.invalid", 25, AF_UNSPEC, addrs_cb, t);
	dns_resolve_host(t->r, "mx.test", 25, AF_INET, addrs_cb, t);      /* these two answer */
	dns_resolve_host(t->r, "::1", 25, AF_UNSPEC, addrs_cb, t);
	dns_cancel(a);
	dns_cancel(b);
	dns_cancel(c);
	run(t, 5000);
	assert_int_equal(t->calls, 2);
	run(t, 200); /* nothing else may come */
	assert_int_equal(t->calls, 2);
}

static void test_free_with_pending(void **state)
{
	struct t *t = *state;
	use_fake_dns(t, 1000);
	dns_resolve_host(t->r, "silent.test", 25, AF_UNSPEC, addrs_cb, t);
	dns_resolve_host(t->r, "127.0.0.1", 25, AF_UNSPEC, addrs_cb, t);
	dns_query_txt(t->r, "spf.test", txt_cb, t);
	/* let the queries reach the server, then free with everything pending */
	event_base_loop(t->base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
	t->calls = 0;
	dns_resolver_free(t->r);
	t->r = NULL;
	run(t, 300);
	assert_int_equal(t->calls, 0);
}


/* ---- typed lookups ---- */

struct lk {
	int calls;
	enum dns_result result;
	uint32_t ttl;
	bool cached;
	size_t count, total;
	char text[4][64];
	unsigned char addr[4][16];
	uint16_t pref[4];
	struct event_base *base;
};

static void lk_cb(void *arg, const struct dns_answer *a)
{
	struct lk *l = arg;
	l->calls++;
	l->result = a->result;
	l->ttl = a->ttl;
	l->cached = a->cached;
	l->count = a->count;
	l->total = a->total;
	for (size_t i = 0; i < a->count && i < 4; i++) {
		snprintf(l->text[i], sizeof l->text[i], "%s", a->rr[i].text ? a->rr[i].text : "");
		memcpy(l->addr[i], a->rr[i].addr, 16);
		l->pref[i] = a->rr[i].preference;
	}
	event_base_loopbreak(l->base);
}

static struct lk lookup(struct t *t, const char *name, enum dns_type type)
{
	struct lk l = { .base = t->base };
	dns_lookup(t->r, name, type, lk_cb, &l);
	assert_int_equal(l.calls, 0); /* never from inside the call */
	run(t, 5000);
	assert_int_equal(l.calls, 1);
	return l;
}

static void test_lookup_types(void **state)
{
	struct t *t = *state;
	use_fake_dns(t, 1000);
	struct lk l = lookup(t, "mx.test", DNS_TYPE_A);
	assert_int_equal(l.result, DNS_RESULT_OK);
	assert_int_equal(l.count, 1);
	assert_int_equal(l.ttl, 60);
	assert_memory_equal(l.addr[0], "\xc0\x00\x02\x01", 4);
	l = lookup(t, "mx.test.", DNS_TYPE_AAAA);
	assert_int_equal(l.result, DNS_RESULT_OK);
	assert_int_equal(l.addr[0][0], 0x20);
	l = lookup(t, "mail.test", DNS_TYPE_MX);
	assert_int_equal(l.result, DNS_RESULT_OK);
	assert_int_equal(l.count, 2);
	assert_int_equal(l.pref[0], 10);
	assert_string_equal(l.text[0], "mx.test");
	assert_int_equal(l.pref[1], 20);
	assert_string_equal(l.text[1], "MX2.Test");
	assert_int_equal(l.ttl, 120); /* the smallest */
	l = lookup(t, "1.2.0.192.in-addr.arpa", DNS_TYPE_PTR);
	assert_int_equal(l.result, DNS_RESULT_OK);
	assert_string_equal(l.text[0], "mx.test");
	l = lookup(t, "spf.test", DNS_TYPE_TXT);
	assert_int_equal(l.count, 2);
	assert_string_equal(l.text[0], "v=spf1 -all");
	assert_string_equal(l.text[1], "other=record");
	/* a CNAME to spf.test, answered after the target's record: followed, TTL the smaller */
	l = lookup(t, "alias.test", DNS_TYPE_TXT);
	assert_int_equal(l.result, DNS_RESULT_OK);
	assert_int_equal(l.count, 1);
	assert_string_equal(l.text[0], "v=spf1 -all x");
	assert_int_equal(l.ttl, 90);
}

static void test_lookup_negative(void **state)
{
	struct t *t = *state;
	use_fake_dns(t, 300);
	struct lk l = lookup(t, "nx.test", DNS_TYPE_TXT);
	assert_int_equal(l.result, DNS_RESULT_NXDOMAIN);
	assert_int_equal(l.ttl, 120); /* min(SOA TTL, MINIMUM) */
	l = lookup(t, "nodata.test", DNS_TYPE_A);
	assert_int_equal(l.result, DNS_RESULT_NODATA);
	assert_int_equal(l.ttl, 30);
	l = lookup(t, "mx.test", DNS_TYPE_TXT); /* NODATA without SOA: not to be kept */
	assert_int_equal(l.result, DNS_RESULT_NODATA);
	assert_int_equal(l.ttl, 0);
	l = lookup(t, "fail.test", DNS_TYPE_A);
	assert_int_equal(l.result, DNS_RESULT_TEMPFAIL);
	l = lookup(t, "silent.test", DNS_TYPE_TXT);
	assert_int_equal(l.result, DNS_RESULT_TEMPFAIL);
	int q = t->dns.queries;
	l = lookup(t, "x.invalid", DNS_TYPE_TXT);
	assert_int_equal(l.result, DNS_RESULT_NXDOMAIN);
	l = lookup(t, "a..b", DNS_TYPE_TXT);
	assert_int_equal(l.result, DNS_RESULT_NXDOMAIN);
	l = lookup(t, "", DNS_TYPE_A);
	assert_int_equal(l.result, DNS_RESULT_NXDOMAIN);
	assert_int_equal(t->dns.queries, q); /* none of those asked */
}

static void test_lookup_cache(void **state)
{
	struct t *t = *state;
	use_fake_dns(t, 300);
	struct dns_cache *c = dns_cache_new(100);
	dns_resolver_set_cache(t->r, c);
	struct lk l = lookup(t, "spf.test", DNS_TYPE_TXT);
	assert_false(l.cached);
	int q = t->dns.queries;
	l = lookup(t, "SPF.test.", DNS_TYPE_TXT);
	assert_true(l.cached);
	assert_int_equal(l.count, 2);
	assert_string_equal(l.text[1], "other=record");
	l = lookup(t, "nx.test", DNS_TYPE_TXT);
	l = lookup(t, "nx.test", DNS_TYPE_TXT);
	assert_true(l.cached);
	assert_int_equal(l.result, DNS_RESULT_NXDOMAIN);
	assert_int_equal(t->dns.queries, q + 1);
	l = lookup(t, "spf.test", DNS_TYPE_A); /* another type: asked */
	assert_false(l.cached);
	l = lookup(t, "fail.test", DNS_TYPE_A);
	l = lookup(t, "fail.test", DNS_TYPE_A); /* failures are never kept */
	assert_false(l.cached);
	assert_int_equal(l.result, DNS_RESULT_TEMPFAIL);
	struct dns_resolver_stats rs;
	dns_resolver_stats(t->r, &rs);
	assert_int_equal(rs.cache_hits, 2);
	assert_int_equal(rs.tempfails, 2);
	dns_resolver_free(t->r);
	t->r = NULL;
	dns_cache_free(c);
}

/* Expiry by TTL and the bound, without a server. */
static void test_cache_ttl_and_bound(void **state)
{
	(void)state;
	struct dns_cache *c = dns_cache_new(3);
	struct dns_answer *a = dns_answer_new_empty(DNS_TYPE_TXT, DNS_RESULT_NXDOMAIN, "NXDOMAIN");
	a->ttl = 10;
	dns_cache_put(c, "a.test", a, 1000);
	struct dns_answer *h = dns_cache_get(c, "A.TEST", DNS_TYPE_TXT, 10999);
	assert_ptr_equal(h, a);
	dns_answer_unref(h);
	assert_null(dns_cache_get(c, "a.test", DNS_TYPE_TXT, 11000)); /* expired */
	assert_null(dns_cache_get(c, "a.test", DNS_TYPE_A, 2000));
	dns_cache_put(c, "a.test", a, 0);
	dns_cache_put(c, "b.test", a, 0);
	dns_cache_put(c, "c.test", a, 0);
	dns_answer_unref(dns_cache_get(c, "a.test", DNS_TYPE_TXT, 1)); /* a is now the most recent */
	dns_cache_put(c, "d.test", a, 0);                           /* b goes */
	assert_null(dns_cache_get(c, "b.test", DNS_TYPE_TXT, 1));
	h = dns_cache_get(c, "a.test", DNS_TYPE_TXT, 1);
	assert_non_null(h);
	dns_answer_unref(h);
	struct dns_cache_stats st;
	dns_cache_stats(c, &st);
	assert_int_equal(st.entries, 3);
	assert_int_equal(st.evictions, 1);
	a->ttl = 0;
	dns_cache_put(c, "e.test", a, 0); /* TTL 0: not kept */
	assert_null(dns_cache_get(c, "e.test", DNS_TYPE_TXT, 0));
	dns_cache_free(c);
	dns_answer_unref(a);
}

static void test_servers_check(void **state)
{
	(void)state;
	const char *why = NULL;
	assert_int_equal(dns_servers_check("127.0.0.1:5353, [::1]:53", &why), 0);
	assert_int_equal(dns_servers_check("192.0.2.1 2001:db8::1", &why), 0);
	assert_int_equal(dns_servers_check("", &why), 0);
	assert_int_equal(dns_servers_check("ns.example.com", &why), -1);
	assert_int_equal(dns_servers_check("127.0.0.1:70000", &why), -1);
	assert_int_equal(dns_servers_check("[::1:53", &why), -1);
}

/* The list is applied once, a reload's new list replaces it, "" goes back to resolv.conf's. */
static void test_servers_switch(void **state)
{
	struct t *t = *state;
	fakedns_start(&t->dns, t->base);
	t->r = dns_resolver_new_opts(t->base, 300, 1, NULL);
	char csv[64];
	snprintf(csv, sizeof csv, " 127.0.0.1:%d ,", t->dns.port);
	assert_int_equal(dns_resolver_set_servers(t->r, csv), 0);
	assert_int_equal(dns_resolver_set_servers(t->r, csv), 0);
	struct lk l = lookup(t, "spf.test", DNS_TYPE_TXT);
	assert_int_equal(l.result, DNS_RESULT_OK);
	assert_int_equal(dns_resolver_set_servers(t->r, "127.0.0.1:1"), 0);
	int q = t->dns.queries;
	l = lookup(t, "spf.test", DNS_TYPE_TXT);
	assert_int_equal(l.result, DNS_RESULT_TEMPFAIL);
	assert_int_equal(t->dns.queries, q);
	assert_int_equal(dns_resolver_set_servers(t->r, ""), 0);
	assert_int_equal(dns_resolver_set_servers(t->r, "bogus"), -1);
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_numeric),
		T(test_localhost),
		T(test_invalid_fails_fast),
		T(test_system_resolver_bounded),
		T(test_fake_server_addresses),
		T(test_fake_server_txt),
		T(test_timeout),
		T(test_cancel),
		T(test_free_with_pending),
		T(test_lookup_types),
		T(test_lookup_negative),
		T(test_lookup_cache),
		T(test_cache_ttl_and_bound),
		T(test_servers_check),
		T(test_servers_switch),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
