/* test_dns.c - dns_resolve_host() and dns_query_txt() without the Internet: numeric hosts,
 * "localhost" from /etc/hosts, names under .invalid, and a fake DNS server on 127.0.0.1 (UDP,
 * same event loop) answering A, AAAA, TXT and NXDOMAIN, or staying silent. Callbacks must come
 * from the loop, cancelled queries and freed resolvers must stay quiet, no fd may leak. */
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

/* One answer record pointing at the question's name. */
static size_t put_rr(unsigned char *p, unsigned type, const void *rdata, size_t rdlen)
{
	size_t n = put16(p, 0xc00c);
	n += put16(p + n, type);
	n += put16(p + n, 1);
	n += put16(p + n, 0);
	n += put16(p + n, 60);
	n += put16(p + n, (unsigned)rdlen);
	memcpy(p + n, rdata, rdlen);
	return n + rdlen;
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
	size_t n = qend, an = 0;
	int rcode = 0;
	if (strcasecmp(name, "mx.test") == 0 && type == 1) {
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
	put16(r + 8, 0);
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
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
