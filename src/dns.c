/* dns.c - c-ares driven by libevent: each socket c-ares opens gets a persistent event (through
 * its socket-state callback), its retransmission timeouts a timer. Answers are copied into the
 * query and handed over from a per-query event, so callbacks never run inside a dns_* call or
 * inside c-ares. Typed lookups send the question with ares_query and read the reply themselves
 * (dns_msg.c: TTLs, NXDOMAIN vs NODATA), through the resolver's dns_cache when it has one. */
#include "dns.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ares.h>

#include "dns_cache.h"
#include "util.h"

struct dns_sock {
	struct dns_sock *next;
	ares_socket_t fd;
	struct event *ev;
};

struct dns_query {
	struct dns_resolver *r;
	struct dns_query *prev, *next; /* the resolver's live queries */
	struct event *ev;              /* hands the answer over from the loop */
	dns_addrs_cb addrs_cb;
	dns_txt_cb txt_cb;
	dns_answer_cb answer_cb;
	void *arg;
	bool in_ares;   /* c-ares still owes us its callback */
	bool cancelled;
	struct dns_addrs addrs;
	struct dns_txt txt;
	struct dns_answer *answer;     /* typed lookup: the answer (one reference) */
	struct dns_answer view;        /* what the callback sees (cached set) */
	enum dns_type type;
	char name[DNS_NAME_MAX + 1];
};

struct dns_resolver {
	struct event_base *base;
	ares_channel channel;
	struct event *timer;
	struct dns_sock *socks;
	struct dns_query *queries;
	bool freeing;
	struct dns_cache *cache;       /* borrowed, or NULL */
	char *servers;                 /* dns_servers in use (normalised), NULL: resolv.conf's */
	struct ares_addr_port_node *resolv_servers; /* resolv.conf's, saved before the first change */
	bool resolv_saved;
	struct dns_resolver_stats st;
};

/* ---- c-ares sockets and timeouts ---- */

static void dns_rearm(struct dns_resolver *r)
{
	struct timeval tv, *tvp = ares_timeout(r->channel, NULL, &tv);
	if (tvp)
		evtimer_add(r->timer, tvp);
	else
		event_del(r->timer);
}

static void dns_sock_ready(evutil_socket_t fd, short what, void *arg)
{
	struct dns_resolver *r = arg;
	ares_process_fd(r->channel, (what & EV_READ) ? fd : ARES_SOCKET_BAD, (what & EV_WRITE) ? fd : ARES_SOCKET_BAD);
	dns_rearm(r);
}

static void dns_timeout(evutil_socket_t fd, short what, void *arg)
{
	struct dns_resolver *r = arg;
	ares_process_fd(r->channel, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
	dns_rearm(r);
}

static void dns_sock_state(void *data, ares_socket_t fd, int readable, int writable)
{
	struct dns_resolver *r = data;
	struct dns_sock **pp = &r->socks;
	while (*pp && (*pp)->fd != fd)
		pp = &(*pp)->next;
	struct dns_sock *s = *pp;
	if (s) {
		event_free(s->ev); /* also from inside its own callback: libevent allows it */
		s->ev = NULL;
	}
	if (r->freeing || (!readable && !writable)) {
		if (s) {
			*pp = s->next;
			free(s);
		}
		return;
	}
	if (s == NULL) {
		s = xcalloc(1, sizeof *s);
		s->fd = fd;
		s->next = r->socks;
		r->socks = s;
	}
	short what = (short)(EV_PERSIST | (readable ? EV_READ : 0) | (writable ? EV_WRITE : 0));
	s->ev = event_new(r->base, fd, what, dns_sock_ready, r);
	event_add(s->ev, NULL);
}

/* ---- resolver ---- */

struct dns_resolver *dns_resolver_new_opts(struct event_base *base, unsigned timeout_ms, unsigned tries,
					   const char **why)
{
	struct dns_resolver *r = xcalloc(1, sizeof *r);
	struct ares_options o;
	memset(&o, 0, sizeof o);
	o.sock_state_cb = dns_sock_state;
	o.sock_state_cb_data = r;
	o.timeout = (int)timeout_ms;
	o.tries = (int)tries;
	int st = ares_init_options(&r->channel, &o, ARES_OPT_SOCK_STATE_CB | ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES);
	if (st != ARES_SUCCESS) {
		if (why)
			*why = ares_strerror(st);
		free(r);
		return NULL;
	}
	r->base = base;
	r->timer = evtimer_new(base, dns_timeout, r);
	return r;
}

struct dns_resolver *dns_resolver_new(struct event_base *base)
{
	return dns_resolver_new_opts(base, 2000, 2, NULL);
}

/* "127.0.0.1:5353, [::1]:53" -> "127.0.0.1:5353,[::1]:53" (c-ares' own form): -1 if it does not
 * fit or holds nothing. */
static int servers_normalise(const char *in, char *out, size_t outsz)
{
	size_t o = 0;
	bool sep = false;

	for (const char *p = in; *p; p++) {
		if (*p == ',' || *p == ' ' || *p == '\t') {
			sep = o > 0;
			continue;
		}
		if (o + 3 > outsz)
			return -1;
		if (sep)
			out[o++] = ',';
		sep = false;
		out[o++] = *p;
	}
	out[o] = '\0';
	return o > 0 ? 0 : -1;
}

int dns_servers_check(const char *value, const char **why)
{
	char norm[1024], *save = NULL;

	if (value[0] == '\0')
		return 0;
	if (servers_normalise(value, norm, sizeof norm) < 0) {
		*why = "expected address[:port], ... (IPv6 in brackets when a port follows)";
		return -1;
	}
	for (char *item = strtok_r(norm, ",", &save); item; item = strtok_r(NULL, ",", &save)) {
		char host[INET6_ADDRSTRLEN + 2];
		const char *port = NULL;
		unsigned char buf[16];
		if (item[0] == '[') {
			char *close = strchr(item, ']');
			if (close == NULL || (close[1] != '\0' && close[1] != ':') || (size_t)(close - item) > sizeof host) {
				*why = "an IPv6 address in brackets is not closed";
				return -1;
			}
			snprintf(host, sizeof host, "%.*s", (int)(close - item - 1), item + 1);
			port = close[1] == ':' ? close + 2 : NULL;
		} else {
			char *colon = strchr(item, ':');
			bool v6 = colon && strchr(colon + 1, ':');
			snprintf(host, sizeof host, "%.*s", (int)(colon && !v6 ? (size_t)(colon - item) : strlen(item)), item);
			port = colon && !v6 ? colon + 1 : NULL;
		}
		if (inet_pton(AF_INET, host, buf) != 1 && inet_pton(AF_INET6, host, buf) != 1) {
			*why = "a DNS server is an IP address (no name): 127.0.0.1:5353, [::1]:53";
			return -1;
		}
		if (port != NULL) {
			char *end;
			unsigned long v = strtoul(port, &end, 10);
			if (port[0] == '\0' || *end != '\0' || v == 0 || v > 65535) {
				*why = "port out of range";
				return -1;
			}
		}
	}
	return 0;
}

int dns_resolver_set_servers(struct dns_resolver *r, const char *csv)
{
	char norm[1024];
	bool reset = csv == NULL || csv[0] == '\0';

	if (!reset && servers_normalise(csv, norm, sizeof norm) < 0)
		return -1;
	if (reset ? r->servers == NULL : r->servers != NULL && strcmp(r->servers, norm) == 0)
		return 0; /* already in use */
	if (!r->resolv_saved) {
		if (ares_get_servers_ports(r->channel, &r->resolv_servers) != ARES_SUCCESS)
			r->resolv_servers = NULL;
		r->resolv_saved = true;
	}
	int st = reset ? ares_set_servers_ports(r->channel, r->resolv_servers)
		       : ares_set_servers_ports_csv(r->channel, norm);
	if (st != ARES_SUCCESS)
		return -1;
	free(r->servers);
	r->servers = reset ? NULL : xstrdup(norm);
	return 0;
}

void dns_resolver_set_cache(struct dns_resolver *r, struct dns_cache *c)
{
	r->cache = c;
}

void dns_resolver_stats(const struct dns_resolver *r, struct dns_resolver_stats *out)
{
	*out = r->st;
}

static void query_unlink(struct dns_query *q)
{
	if (q->prev)
		q->prev->next = q->next;
	else if (q->r)
		q->r->queries = q->next;
	if (q->next)
		q->next->prev = q->prev;
	q->prev = q->next = NULL;
}

static void query_free(struct dns_query *q)
{
	query_unlink(q);
	for (size_t i = 0; i < q->txt.count; i++)
		free(q->txt.txt[i]);
	dns_answer_unref(q->answer);
	event_free(q->ev);
	free(q);
}

void dns_resolver_free(struct dns_resolver *r)
{
	if (r == NULL)
		return;
	r->freeing = true;
	struct dns_query *q = r->queries;
	while (q) {
		struct dns_query *next = q->next;
		if (q->in_ares)
			q->cancelled = true; /* ares_destroy() calls back: freed there */
		else
			query_free(q);
		q = next;
	}
	ares_destroy(r->channel);
	while (r->socks) {
		struct dns_sock *s = r->socks;
		r->socks = s->next;
		if (s->ev)
			event_free(s->ev);
		free(s);
	}
	event_free(r->timer);
	if (r->resolv_servers)
		ares_free_data(r->resolv_servers);
	free(r->servers);
	free(r);
}

/* ---- queries ---- */

static void query_deliver(evutil_socket_t fd, short what, void *arg)
{
	struct dns_query *q = arg;
	query_unlink(q);
	q->r = NULL;
	if (q->answer_cb)
		q->answer_cb(q->arg, &q->view);
	else if (q->addrs_cb)
		q->addrs_cb(q->arg, &q->addrs);
	else
		q->txt_cb(q->arg, &q->txt);
	query_free(q);
}

static struct dns_query *query_new(struct dns_resolver *r, void *arg)
{
	struct dns_query *q = xcalloc(1, sizeof *q);
	q->r = r;
	q->arg = arg;
	q->ev = event_new(r->base, -1, 0, query_deliver, q);
	q->next = r->queries;
	if (r->queries)
		r->queries->prev = q;
	r->queries = q;
	return q;
}

static void query_done(struct dns_query *q, enum dns_status status, const char *error)
{
	q->addrs.status = q->txt.status = status;
	q->addrs.error = q->txt.error = error;
	event_active(q->ev, EV_TIMEOUT, 1);
}

static enum dns_status status_of(int st)
{
	if (st == ARES_SUCCESS)
		return DNS_OK;
	if (st == ARES_ENOTFOUND || st == ARES_ENODATA || st == ARES_ENONAME || st == ARES_EBADNAME)
		return DNS_NOTFOUND;
	return DNS_TEMPFAIL;
}

void dns_cancel(struct dns_query *q)
{
	if (q == NULL)
		return;
	if (q->in_ares)
		q->cancelled = true;
	else
		query_free(q);
}

/* Returns true when c-ares should not see this answer's query any more (cancelled, resolver
 * going away), after freeing it. */
static bool query_abandoned(struct dns_query *q, int st)
{
	q->in_ares = false;
	if (q->cancelled || st == ARES_EDESTRUCTION || (q->r && q->r->freeing)) {
		query_free(q);
		return true;
	}
	return false;
}

static void addrs_copy(struct dns_addrs *res, const struct ares_addrinfo *ai)
{
	for (const struct ares_addrinfo_node *n = ai ? ai->nodes : NULL; n && res->count < DNS_ADDRS_MAX; n = n->ai_next) {
		if (n->ai_addrlen > sizeof res->addr[0])
			continue;
		memcpy(&res->addr[res->count], n->ai_addr, n->ai_addrlen);
		res->addrlen[res->count++] = n->ai_addrlen;
	}
}

static void addrs_answer(void *arg, int st, int timeouts, struct ares_addrinfo *ai)
{
	struct dns_query *q = arg;
	if (!query_abandoned(q, st)) {
		if (st == ARES_SUCCESS)
			addrs_copy(&q->addrs, ai);
		if (st != ARES_SUCCESS)
			query_done(q, status_of(st), ares_strerror(st));
		else if (q->addrs.count == 0)
			query_done(q, DNS_NOTFOUND, "no address");
		else
			query_done(q, DNS_OK, NULL);
	}
	if (ai)
		ares_freeaddrinfo(ai);
}

/* A numeric host ("192.0.2.1", "2001:db8::1", "[2001:db8::1]"): 1 answered, 0 not numeric. */
static int addrs_numeric(struct dns_query *q, const char *host, uint16_t port, int family)
{
	char buf[INET6_ADDRSTRLEN + 2];
	size_t len = strlen(host);
	if (len >= 2 && host[0] == '[' && host[len - 1] == ']' && len - 2 < sizeof buf) {
		memcpy(buf, host + 1, len - 2);
		buf[len - 2] = '\0';
		host = buf;
	}
	struct sockaddr_in *sin = (struct sockaddr_in *)&q->addrs.addr[0];
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&q->addrs.addr[0];
	if (inet_pton(AF_INET, host, &sin->sin_addr) == 1) {
		sin->sin_family = AF_INET;
		sin->sin_port = htons(port);
		q->addrs.addrlen[0] = sizeof *sin;
	} else if (inet_pton(AF_INET6, host, &sin6->sin6_addr) == 1) {
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons(port);
		q->addrs.addrlen[0] = sizeof *sin6;
	} else {
		return 0;
	}
	int got = q->addrs.addr[0].ss_family;
	if (family != AF_UNSPEC && family != got) {
		query_done(q, DNS_NOTFOUND, "address of another family");
		return 1;
	}
	q->addrs.count = 1;
	query_done(q, DNS_OK, NULL);
	return 1;
}

/* RFC 6761 6.4: names under "invalid." never resolve. */
static bool name_invalid(const char *name)
{
	size_t len = strlen(name);
	while (len && name[len - 1] == '.')
		len--;
	if (len < 7)
		return len == 0;
	return ascii_casecmp_n(name + len - 7, 7, "invalid", 7) == 0 && (len == 7 || name[len - 8] == '.');
}

struct dns_query *dns_resolve_host(struct dns_resolver *r, const char *host, uint16_t port, int family,
				   dns_addrs_cb cb, void *arg)
{
	struct dns_query *q = query_new(r, arg);
	q->addrs_cb = cb;
	if (addrs_numeric(q, host, port, family))
		return q;
	if (name_invalid(host)) {
		query_done(q, DNS_NOTFOUND, "Domain name not found");
		return q;
	}
	char service[8];
	snprintf(service, sizeof service, "%u", (unsigned)port);
	struct ares_addrinfo_hints hints;
	memset(&hints, 0, sizeof hints);
	hints.ai_family = family;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = ARES_AI_NUMERICSERV | ARES_AI_NOSORT;
	q->in_ares = true;
	ares_getaddrinfo(r->channel, host, service, &hints, addrs_answer, q); /* may answer at once */
	dns_rearm(r);
	return q;
}

static void txt_answer(void *arg, int st, int timeouts, unsigned char *abuf, int alen)
{
	struct dns_query *q = arg;
	if (query_abandoned(q, st))
		return;
	struct ares_txt_ext *list = NULL;
	if (st == ARES_SUCCESS)
		st = ares_parse_txt_reply_ext(abuf, alen, &list);
	if (st != ARES_SUCCESS) {
		query_done(q, status_of(st), ares_strerror(st));
		return;
	}
	struct dns_txt *t = &q->txt;
	for (struct ares_txt_ext *e = list; e; e = e->next) {
		if (e->record_start) {
			if (t->count == DNS_TXT_MAX)
				break;
			t->txt[t->count] = xcalloc(1, 1);
			t->len[t->count++] = 0;
		} else if (t->count == 0) {
			continue;
		}
		size_t i = t->count - 1;
		t->txt[i] = xrealloc(t->txt[i], t->len[i] + e->length + 1);
		memcpy(t->txt[i] + t->len[i], e->txt, e->length);
		t->len[i] += e->length;
		t->txt[i][t->len[i]] = '\0';
	}
	ares_free_data(list);
	query_done(q, t->count ? DNS_OK : DNS_NOTFOUND, t->count ? NULL : "no TXT record");
}

struct dns_query *dns_query_txt(struct dns_resolver *r, const char *name, dns_txt_cb cb, void *arg)
{
	struct dns_query *q = query_new(r, arg);
	q->txt_cb = cb;
	if (name_invalid(name)) {
		query_done(q, DNS_NOTFOUND, "Domain name not found");
		return q;
	}
	q->in_ares = true;
	ares_query(r->channel, name, 1 /* C_IN */, 16 /* T_TXT */, txt_answer, q);
	dns_rearm(r);
	return q;
}

/* ---- typed lookups ---- */

static void lookup_deliver(struct dns_query *q, struct dns_answer *a, bool cached)
{
	q->answer = a;
	q->view = *a;
	q->view.cached = cached;
	if (a->result == DNS_RESULT_TEMPFAIL && q->r)
		q->r->st.tempfails++;
	event_active(q->ev, EV_TIMEOUT, 1);
}

static void lookup_answer(void *arg, int st, int timeouts, unsigned char *abuf, int alen)
{
	struct dns_query *q = arg;
	struct dns_answer *a;

	(void)timeouts;
	if (query_abandoned(q, st))
		return;
	if (abuf != NULL && alen > 0 && (st == ARES_SUCCESS || st == ARES_ENODATA || st == ARES_ENOTFOUND))
		a = dns_msg_parse(abuf, (size_t)alen, q->name, q->type);
	else if (st == ARES_EBADNAME)
		a = dns_answer_new_empty(q->type, DNS_RESULT_NXDOMAIN, "not a domain name");
	else
		a = dns_answer_new_empty(q->type, DNS_RESULT_TEMPFAIL, st == ARES_ETIMEOUT ? "timeout" : ares_strerror(st));
	if (q->r->cache != NULL)
		dns_cache_put(q->r->cache, q->name, a, now_ms());
	lookup_deliver(q, a, false);
}

/* A domain name we may ask about: 1 to 253 octets without the trailing dot, labels of 1 to 63. */
static bool lookup_name_ok(const char *name, size_t len)
{
	size_t label = 0;

	if (len == 0 || len > 253)
		return false;
	for (size_t i = 0; i < len; i++) {
		if (name[i] == '.') {
			if (label == 0)
				return false;
			label = 0;
		} else if (++label > 63 || name[i] == '\0') {
			return false;
		}
	}
	return true;
}

struct dns_query *dns_lookup(struct dns_resolver *r, const char *name, enum dns_type type, dns_answer_cb cb,
			     void *arg)
{
	struct dns_query *q = query_new(r, arg);
	size_t len = strlen(name);

	q->answer_cb = cb;
	q->type = type;
	r->st.lookups++;
	while (len > 0 && name[len - 1] == '.')
		len--;
	if (!lookup_name_ok(name, len)) {
		lookup_deliver(q, dns_answer_new_empty(type, DNS_RESULT_NXDOMAIN, "not a domain name"), false);
		return q;
	}
	memcpy(q->name, name, len);
	q->name[len] = '\0';
	if (name_invalid(q->name)) {
		lookup_deliver(q, dns_answer_new_empty(type, DNS_RESULT_NXDOMAIN, "NXDOMAIN (RFC 6761)"), false);
		return q;
	}
	struct dns_answer *hit = r->cache ? dns_cache_get(r->cache, q->name, type, now_ms()) : NULL;
	if (hit != NULL) {
		r->st.cache_hits++;
		lookup_deliver(q, hit, true);
		return q;
	}
	r->st.sent++;
	q->in_ares = true;
	ares_query(r->channel, q->name, 1 /* C_IN */, (int)type, lookup_answer, q);
	dns_rearm(r);
	return q;
}
