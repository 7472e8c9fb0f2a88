/* callout_pool.c - callouts to one validation server on one event loop: flights (one probe per
 * address, shared by every lookup of it), the queue of flights waiting for a connection, the
 * connections and their batches (MAIL, RCPT..., RSET), catch-all checks per domain, and the
 * circuit breaker. See callout_pool.h. */
#include "callout_pool.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/random.h>

#include "backend_health.h"
#include "dns.h"
#include "log.h"
#include "util.h"

#define POOL_BATCH_MAX 16          /* RCPTs in one MAIL transaction */
#define POOL_CONN_MAX_REJECTS 8    /* then a fresh connection: Postfix's smtpd_soft_error_limit
				    * (10) would slow each further reply by a second */
#define POOL_IDLE_MS 30000         /* an unused connection is closed after this */
#define POOL_MEMO_MS 5000          /* an answer is shared with lookups arriving this much later */
#define POOL_QUEUE_MAX 20000       /* flights waiting for a connection; more answer UNAVAILABLE */
#define POOL_CHECK_RETRY_MS 60000  /* a catch-all check that got no answer is retried after this */
#define POOL_TRIES 2               /* a flight whose reused connection dropped is tried again */

struct waiter {
	struct waiter *next;
	callout_answer_cb cb;
	void *arg;
};

struct cdomain;
struct cconn;

enum flight_state { FL_QUEUED, FL_SENT, FL_PARKED, FL_DONE };

struct flight {
	TAILQ_ENTRY(flight) link;  /* in the pool's queue, a batch, a domain's parked list or memo */
	struct flight *hnext;      /* hash chain (not for catch-all checks) */
	enum flight_state state;
	struct waiter *waiters;
	struct cdomain *dom;
	struct cconn *conn;        /* FL_SENT: the connection carrying it */
	bool check;                /* the domain's catch-all check */
	unsigned tries;
	uint64_t done_ms;
	struct rcpt_answer ans;
	char addr[RCPT_ADDR_MAX + 1];
};
TAILQ_HEAD(flight_list, flight);

enum check_state { CHK_NONE, CHK_RUNNING, CHK_DONE };

struct cdomain {
	struct cdomain *next;
	enum check_state check;
	bool catchall, warned;
	uint64_t checked_ms;       /* when the last check ended (monotonic) */
	uint64_t ttl_ms;
	struct flight_list parked; /* VALID answers waiting for the check */
	char name[SMTP_DOMAIN_MAX + 1];
};

enum conn_state { CC_RESOLVING, CC_CONNECTING, CC_IDLE, CC_BUSY, CC_QUITTING };

struct cconn {
	struct callout_pool *p;
	enum conn_state st;
	struct smtp_client *client;
	struct dns_query *dq;
	struct event *idle;
	struct flight_list batch;
	unsigned rejects;          /* 5xx RCPT replies on this connection */
	bool used;                 /* has carried a batch: a drop may be the server's idle close */
	struct smtp_reply mail;    /* the reply to this batch's MAIL */
};

struct callout_pool {
	struct event_base *base;
	struct dns_resolver *dns;
	struct backend_health *health;
	struct callout_pool_opts o;
	char *spec, *host, *port, *sender, *helo, *key;
	struct callout_domain_ttl *ttls;
	struct flight **table;     /* address -> flight (queued, sent, parked or fresh answer) */
	size_t tsize, tcount;
	struct flight_list queue;  /* waiting for a connection */
	size_t queued;
	struct flight_list memo;   /* answered, kept POOL_MEMO_MS, oldest first */
	struct flight_list ready;  /* answers known at lookup time, given from the loop (not in table) */
	struct cdomain *domains;
	struct cconn **conns;      /* max_conns slots */
	struct event *kick;
	bool closing;
};

static void pool_kick(struct callout_pool *p);
static void conn_close(struct cconn *c, bool quit);

/* ---- verdicts ---- */

enum rcpt_verdict callout_verdict(const struct smtp_reply *r)
{
	if (r->code >= 200 && r->code < 300)
		return RCPT_VALID;
	if (r->code == 550 || r->code == 551 || r->code == 553)
		return RCPT_INVALID;
	if (r->code >= 500 && r->code < 600 && strncmp(r->enhanced, "5.1.", 4) == 0)
		return RCPT_INVALID;
	return RCPT_UNAVAILABLE;
}

static void counters_add(struct callout_pool *p, enum rcpt_verdict v)
{
	struct callout_counters *k = p->o.counters;
	atomic_fetch_add(v == RCPT_VALID ? &k->valid : v == RCPT_INVALID ? &k->invalid : &k->unavailable, 1);
}

/* ---- the flight table ---- */

static size_t hash_str(const char *s)
{
	size_t h = 1469598103934665603ULL;
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ULL;
	return h;
}

static struct flight **table_slot(struct callout_pool *p, const char *addr)
{
	struct flight **pp = &p->table[hash_str(addr) & (p->tsize - 1)];
	while (*pp && strcmp((*pp)->addr, addr) != 0)
		pp = &(*pp)->hnext;
	return pp;
}

static void table_grow(struct callout_pool *p)
{
	struct flight **old = p->table;
	size_t osize = p->tsize;

	p->tsize = osize ? osize * 2 : 256;
	p->table = xcalloc(p->tsize, sizeof *p->table);
	for (size_t i = 0; i < osize; i++) {
		for (struct flight *f = old[i], *n; f; f = n) {
			n = f->hnext;
			struct flight **slot = &p->table[hash_str(f->addr) & (p->tsize - 1)];
			f->hnext = *slot;
			*slot = f;
		}
	}
	free(old);
}

static void table_add(struct callout_pool *p, struct flight *f)
{
	if (p->tcount + 1 > p->tsize / 2 + p->tsize / 4)
		table_grow(p);
	struct flight **slot = &p->table[hash_str(f->addr) & (p->tsize - 1)];
	f->hnext = *slot;
	*slot = f;
	p->tcount++;
}

static void table_del(struct callout_pool *p, struct flight *f)
{
	struct flight **pp = table_slot(p, f->addr);
	if (*pp == f) {
		*pp = f->hnext;
		p->tcount--;
	}
}

/* Forget answers older than POOL_MEMO_MS. */
static void memo_expire(struct callout_pool *p, uint64_t now)
{
	struct flight *f;
	while ((f = TAILQ_FIRST(&p->memo)) != NULL && now - f->done_ms >= POOL_MEMO_MS) {
		TAILQ_REMOVE(&p->memo, f, link);
		table_del(p, f);
		free(f);
	}
}

/* ---- domains and catch-all checks ---- */

static struct cdomain *domain_get(struct callout_pool *p, const char *addr)
{
	const char *name = strrchr(addr, '@');
	name = name ? name + 1 : "";
	for (struct cdomain *d = p->domains; d; d = d->next)
		if (strcmp(d->name, name) == 0)
			return d;
	struct cdomain *d = xcalloc(1, sizeof *d);
	snprintf(d->name, sizeof d->name, "%s", name);
	TAILQ_INIT(&d->parked);
	d->ttl_ms = p->o.default_ttl_ms;
	for (size_t i = 0; i < p->o.nttls; i++)
		if (strcmp(p->ttls[i].name, name) == 0)
			d->ttl_ms = p->ttls[i].positive_ttl_ms;
	d->next = p->domains;
	p->domains = d;
	return d;
}

static void flight_enqueue(struct callout_pool *p, struct flight *f, bool head)
{
	f->state = FL_QUEUED;
	if (head)
		TAILQ_INSERT_HEAD(&p->queue, f, link);
	else
		TAILQ_INSERT_TAIL(&p->queue, f, link);
	p->queued++;
	atomic_store(&p->o.counters->queued, p->queued);
}

/* Queue a probe of a random address in d unless one ran within the domain's positive TTL. */
static void domain_check_maybe(struct callout_pool *p, struct cdomain *d)
{
	uint64_t now = now_ms();
	unsigned char rnd[8] = { 0 };

	if (d->check == CHK_RUNNING || (d->check == CHK_DONE && now - d->checked_ms < d->ttl_ms))
		return;
	if (getrandom(rnd, sizeof rnd, GRND_NONBLOCK) != (ssize_t)sizeof rnd)
		for (size_t i = 0; i < sizeof rnd; i++)
			rnd[i] = (unsigned char)(now >> (i * 3)) ^ (unsigned char)i;
	struct flight *f = xcalloc(1, sizeof *f);
	f->check = true;
	f->dom = d;
	snprintf(f->addr, sizeof f->addr, "backstop-catchall-check-%02x%02x%02x%02x%02x%02x%02x%02x@%s", rnd[0],
		 rnd[1], rnd[2], rnd[3], rnd[4], rnd[5], rnd[6], rnd[7], d->name);
	d->check = CHK_RUNNING;
	atomic_fetch_add(&p->o.counters->catchall_checks, 1);
	flight_enqueue(p, f, true);
}

static void flight_answer(struct callout_pool *p, struct flight *f);

/* The check's verdict: VALID = catch-all, INVALID = not, UNAVAILABLE = unknown (retried soon). */
static void domain_check_done(struct callout_pool *p, struct cdomain *d, const struct rcpt_answer *a)
{
	bool was = d->catchall;

	d->check = CHK_DONE;
	d->checked_ms = now_ms();
	if (a->verdict == RCPT_UNAVAILABLE && d->ttl_ms > POOL_CHECK_RETRY_MS)
		d->checked_ms -= d->ttl_ms - POOL_CHECK_RETRY_MS;
	d->catchall = a->verdict == RCPT_VALID || (a->verdict == RCPT_UNAVAILABLE && was);
	if (d->catchall && !was)
		atomic_fetch_add(&p->o.counters->catchall_domains, 1);
	if (!d->catchall && was)
		atomic_fetch_sub(&p->o.counters->catchall_domains, 1);
	if (d->catchall && !d->warned) {
		log_warn("%s: validation server accepts any address at %s (catch-all: it accepted %s); "
			 "its VALID answers for %s say nothing (on_catchall applies)", p->spec, d->name,
			 strchr(a->reason, '<') ? a->reason : "a random address", d->name);
		d->warned = true;
	}
	struct flight *f;
	while ((f = TAILQ_FIRST(&d->parked)) != NULL) {
		TAILQ_REMOVE(&d->parked, f, link);
		flight_answer(p, f);
	}
}

/* ---- answering ---- */

/* snprintf that may truncate (reasons are for logs). */
static void fmt_reason(char *buf, size_t bufsz, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void fmt_reason(char *buf, size_t bufsz, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, bufsz, fmt, ap);
	va_end(ap);
}

static void answer_set(struct callout_pool *p, struct rcpt_answer *a, enum rcpt_verdict v, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static void answer_set(struct callout_pool *p, struct rcpt_answer *a, enum rcpt_verdict v, const char *fmt, ...)
{
	va_list ap;

	a->verdict = v;
	a->source = p->spec;
	a->catchall = false;
	va_start(ap, fmt);
	vsnprintf(a->reason, sizeof a->reason, fmt, ap);
	va_end(ap);
}

/* Give the flight's answer to its waiters; keep it a few seconds for late lookups. */
static void flight_answer(struct callout_pool *p, struct flight *f)
{
	if (f->ans.verdict == RCPT_VALID && f->dom->catchall) {
		f->ans.catchall = true;
		fmt_reason(f->ans.reason, sizeof f->ans.reason, "catch-all: %s accepts any address at %s",
			 p->host, f->dom->name);
	}
	counters_add(p, f->ans.verdict);
	log_debug("%s: %s: %s (%s)", p->spec, f->addr, rcpt_verdict_name(f->ans.verdict), f->ans.reason);
	for (struct waiter *w = f->waiters, *n; w; w = n) {
		n = w->next;
		w->cb(w->arg, &f->ans);
		free(w);
	}
	f->waiters = NULL;
	if (f->ans.verdict == RCPT_UNAVAILABLE || p->closing) {
		table_del(p, f);
		free(f);
		return;
	}
	f->state = FL_DONE;
	f->done_ms = now_ms();
	TAILQ_INSERT_TAIL(&p->memo, f, link);
}

/* A flight's probe ended (it is in no list). */
static void flight_finish(struct callout_pool *p, struct flight *f)
{
	if (f->check) {
		domain_check_done(p, f->dom, &f->ans);
		free(f);
		return;
	}
	if (f->ans.verdict == RCPT_VALID && f->dom->check == CHK_RUNNING && !p->closing) {
		f->state = FL_PARKED;
		TAILQ_INSERT_TAIL(&f->dom->parked, f, link);
		return;
	}
	flight_answer(p, f);
}

/* ---- the queue ---- */

static struct flight *queue_pop(struct callout_pool *p)
{
	struct flight *f = TAILQ_FIRST(&p->queue);
	if (f) {
		TAILQ_REMOVE(&p->queue, f, link);
		p->queued--;
		atomic_store(&p->o.counters->queued, p->queued);
	}
	return f;
}

/* Answer every queued flight UNAVAILABLE (the server is down, or we are closing). */
static void queue_fail_all(struct callout_pool *p, const char *why)
{
	struct flight *f;
	while ((f = queue_pop(p)) != NULL) {
		answer_set(p, &f->ans, RCPT_UNAVAILABLE, "%s", why);
		flight_finish(p, f);
	}
}

/* ---- connections ---- */

static unsigned conns_open(const struct callout_pool *p, enum conn_state only, bool any)
{
	unsigned n = 0;
	for (unsigned i = 0; i < p->o.max_conns; i++)
		if (p->conns[i] && (any || p->conns[i]->st == only))
			n++;
	return n;
}

static void conn_slot_clear(struct cconn *c)
{
	struct callout_pool *p = c->p;
	for (unsigned i = 0; i < p->o.max_conns; i++)
		if (p->conns[i] == c)
			p->conns[i] = NULL;
	atomic_fetch_sub(&p->o.counters->open_now, 1);
}

static void conn_close(struct cconn *c, bool quit)
{
	conn_slot_clear(c);
	if (c->dq)
		dns_cancel(c->dq);
	if (c->client)
		smtp_client_free(c->client, quit);
	if (c->idle)
		event_free(c->idle);
	free(c);
}

/* The connection failed (connect, timeout, closed, garbage). Flights of its batch without an
 * answer are tried again on another connection when this one had been reused (the server may
 * simply have closed an idle connection), otherwise they are UNAVAILABLE. */
static void conn_fail(struct cconn *c, const char *why)
{
	struct callout_pool *p = c->p;
	struct flight_list batch;
	bool retry = c->used && c->mail.code == 0; /* dropped before this batch got a reply */
	bool fresh = !c->used;
	struct flight *f;

	TAILQ_INIT(&batch);
	while ((f = TAILQ_FIRST(&c->batch)) != NULL) {
		TAILQ_REMOVE(&c->batch, f, link);
		TAILQ_INSERT_TAIL(&batch, f, link);
	}
	conn_close(c, false);
	while ((f = TAILQ_LAST(&batch, flight_list)) != NULL) {
		TAILQ_REMOVE(&batch, f, link);
		if (retry && ++f->tries < POOL_TRIES && !p->closing) {
			flight_enqueue(p, f, true);
			continue;
		}
		answer_set(p, &f->ans, RCPT_UNAVAILABLE, "%s:%s: %s", p->host, p->port, why);
		flight_finish(p, f);
	}
	if (fresh && conns_open(p, CC_IDLE, true) == 0) { /* nobody left to take the queue */
		char reason[RCPT_REASON_MAX];
		fmt_reason(reason, sizeof reason, "%s:%s: %s", p->host, p->port, why);
		queue_fail_all(p, reason);
	}
	pool_kick(p);
}

static void conn_idle_timeout(evutil_socket_t fd, short what, void *arg)
{
	struct cconn *c = arg;
	log_debug("%s: closing an idle connection", c->p->spec);
	conn_close(c, true);
}

static void conn_quit_cb(void *arg, const struct smtp_reply *r)
{
	struct cconn *c = arg;
	struct callout_pool *p = c->p;

	conn_close(c, false);
	pool_kick(p);
}

/* The batch is over (RSET answered): back to idle, or a fresh connection next time. */
static void conn_rset_cb(void *arg, const struct smtp_reply *r)
{
	struct cconn *c = arg;
	struct callout_pool *p = c->p;
	static const struct timeval idle = { POOL_IDLE_MS / 1000, 0 };

	if (r->code == 0) {
		conn_fail(c, r->text);
		return;
	}
	if (r->code != 250 || c->rejects >= POOL_CONN_MAX_REJECTS) {
		/* keep the slot until the server has answered QUIT: its replacement must not make
		 * one connection more than callout_max_connections, even for a moment */
		c->st = CC_QUITTING;
		smtp_client_command(c->client, "QUIT", conn_quit_cb, c);
		return;
	} else {
		c->st = CC_IDLE;
		evtimer_add(c->idle, &idle);
	}
	pool_kick(p);
}

static void conn_mail_cb(void *arg, const struct smtp_reply *r)
{
	struct cconn *c = arg;
	if (r->code == 0)
		conn_fail(c, r->text);
	else
		c->mail = *r;
}

static void conn_rcpt_cb(void *arg, const struct smtp_reply *r)
{
	struct flight *f = arg;
	struct cconn *c = f->conn;
	struct callout_pool *p = c->p;

	if (r->code == 0) {
		conn_fail(c, r->text);
		return;
	}
	TAILQ_REMOVE(&c->batch, f, link);
	f->conn = NULL;
	if (c->mail.code / 100 != 2) {
		answer_set(p, &f->ans, RCPT_UNAVAILABLE, "%s refused MAIL FROM:<%s>: %d %s%s%s", p->host, p->sender,
			   c->mail.code, c->mail.enhanced, c->mail.enhanced[0] ? " " : "", c->mail.text);
	} else {
		enum rcpt_verdict v = callout_verdict(r);
		answer_set(p, &f->ans, v, "%s: %d %s%s%s", p->host, r->code, r->enhanced, r->enhanced[0] ? " " : "",
			   r->text);
		if (r->code / 100 == 5)
			c->rejects++;
	}
	flight_finish(p, f);
}

/* RCPT TO:<addr>, quoting the local part when it is not a dot-atom. -1 if it cannot be sent. */
int callout_rcpt_line(const char *addr, char *buf, size_t bufsz)
{
	static const char atext[] = "!#$%&'*+-/=?^_`{|}~.";
	const char *at = strrchr(addr, '@');
	bool atom = at != NULL && at != addr && addr[0] != '.' && at[-1] != '.' && strstr(addr, "..") == NULL;
	char local[2 * SMTP_LOCAL_MAX + 3];
	size_t n = 0;

	if (at == NULL)
		return -1;
	for (const char *s = addr; s < at; s++) {
		unsigned char ch = (unsigned char)*s;
		if (ch < 0x20 || ch == 0x7f)
			return -1;
		if (ch < 0x80 && !((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
				   strchr(atext, ch)))
			atom = false;
	}
	if (!atom)
		local[n++] = '"';
	for (const char *s = addr; s < at; s++) {
		if (!atom && (*s == '"' || *s == '\\'))
			local[n++] = '\\';
		local[n++] = *s;
	}
	if (!atom)
		local[n++] = '"';
	local[n] = '\0';
	int len = snprintf(buf, bufsz, "RCPT TO:<%s%s>", local, at);
	return len > 0 && (size_t)len < bufsz ? 0 : -1;
}

/* Send MAIL, up to a batch of RCPTs from the queue, and RSET. */
static void conn_start_batch(struct cconn *c)
{
	struct callout_pool *p = c->p;
	unsigned room = POOL_CONN_MAX_REJECTS - c->rejects, n = 0;
	char line[600];

	if (room > POOL_BATCH_MAX)
		room = POOL_BATCH_MAX;
	evtimer_del(c->idle);
	c->st = CC_BUSY;
	c->used = true;
	memset(&c->mail, 0, sizeof c->mail);
	snprintf(line, sizeof line, "MAIL FROM:<%s>", p->sender);
	smtp_client_command(c->client, line, conn_mail_cb, c);
	while (n < room) {
		struct flight *f = queue_pop(p);
		if (f == NULL)
			break;
		if (callout_rcpt_line(f->addr, line, sizeof line) != 0) {
			answer_set(p, &f->ans, RCPT_INVALID, "not a possible mailbox (control characters)");
			flight_finish(p, f);
			continue;
		}
		f->state = FL_SENT;
		f->conn = c;
		TAILQ_INSERT_TAIL(&c->batch, f, link);
		if (!f->check)
			atomic_fetch_add(&p->o.counters->probes, 1);
		smtp_client_command(c->client, line, conn_rcpt_cb, f);
		n++;
	}
	smtp_client_command(c->client, "RSET", conn_rset_cb, c);
	log_debug("%s: %u RCPT%s sent, %zu waiting", p->spec, n, n == 1 ? "" : "s", p->queued);
}

static void conn_ready_cb(void *arg, const struct smtp_reply *r)
{
	struct cconn *c = arg;
	struct callout_pool *p = c->p;
	char why[RCPT_REASON_MAX];

	if (r->code == 250) {
		backend_health_report(p->health, p->key, true);
		log_debug("%s: connected%s", p->spec, smtp_client_has_ext(c->client, "PIPELINING") ? " (pipelining)" : "");
		c->st = CC_IDLE;
		pool_kick(p);
		return;
	}
	atomic_fetch_add(&p->o.counters->connect_failures, 1);
	backend_health_report(p->health, p->key, false);
	if (r->code)
		fmt_reason(why, sizeof why, "refused the session: %d %s", r->code, r->text);
	else
		fmt_reason(why, sizeof why, "%s", r->text);
	log_warn("%s: validation server %s:%s: %s", p->spec, p->host, p->port, why);
	conn_fail(c, why);
}

static void conn_resolved(void *arg, const struct dns_addrs *res)
{
	struct cconn *c = arg;
	struct callout_pool *p = c->p;
	struct smtp_client_opts o = {
		.helo_name = p->helo, .tls = DELIVER_TLS_NONE, .connect_timeout_ms = p->o.timeout_ms,
		.command_timeout_ms = p->o.timeout_ms, .data_timeout_ms = p->o.timeout_ms,
	};
	char why[RCPT_REASON_MAX];

	c->dq = NULL;
	if (res->status != DNS_OK) {
		fmt_reason(why, sizeof why, "cannot resolve %s: %s", p->host, res->error ? res->error : "no address");
		backend_health_report(p->health, p->key, false);
		log_warn("%s: %s", p->spec, why);
		conn_fail(c, why);
		return;
	}
	c->st = CC_CONNECTING;
	c->client = smtp_client_new(p->base, (const struct sockaddr *)&res->addr[0], res->addrlen[0], &o, conn_ready_cb, c);
}

static void conn_open(struct callout_pool *p, unsigned slot)
{
	struct cconn *c = xcalloc(1, sizeof *c);

	c->p = p;
	c->st = CC_RESOLVING;
	TAILQ_INIT(&c->batch);
	c->idle = evtimer_new(p->base, conn_idle_timeout, c);
	p->conns[slot] = c;
	atomic_fetch_add(&p->o.counters->connections, 1);
	atomic_fetch_add(&p->o.counters->open_now, 1);
	log_debug("%s: opening connection %u", p->spec, slot + 1);
	c->dq = dns_resolve_host(p->dns, p->host, (uint16_t)atoi(p->port), AF_UNSPEC, conn_resolved, c);
}

/* ---- scheduling ---- */

/* Give queued flights to idle connections; open connections while there is more work than the
 * ones being opened will take. */
static void pool_schedule(struct callout_pool *p)
{
	memo_expire(p, now_ms());
	for (unsigned i = 0; i < p->o.max_conns && !TAILQ_EMPTY(&p->queue); i++) {
		struct cconn *c = p->conns[i];
		if (c && c->st == CC_IDLE && !smtp_client_usable(c->client))
			conn_close(c, false); /* the server closed it while idle */
		else if (c && c->st == CC_IDLE)
			conn_start_batch(c);
	}
	for (unsigned i = 0; i < p->o.max_conns && !p->closing; i++) {
		unsigned opening = conns_open(p, CC_RESOLVING, false) + conns_open(p, CC_CONNECTING, false);
		if (p->conns[i] || p->queued <= (size_t)opening * POOL_BATCH_MAX)
			continue;
		if (!backend_health_try(p->health, p->key, p->o.retry_after_ms)) {
			if (conns_open(p, CC_IDLE, true) == 0) {
				char why[RCPT_REASON_MAX];
				fmt_reason(why, sizeof why, "%s:%s: not answering (connections failed; next try within %llu s)",
					 p->host, p->port, (unsigned long long)(p->o.retry_after_ms / 1000));
				queue_fail_all(p, why);
			}
			break;
		}
		conn_open(p, i);
	}
}

static void ready_drain(struct callout_pool *p);

static void pool_kick_cb(evutil_socket_t fd, short what, void *arg)
{
	ready_drain(arg);
	pool_schedule(arg);
}

/* Schedule from the loop (never re-enter from inside a callback chain). */
static void pool_kick(struct callout_pool *p)
{
	if (!p->closing)
		event_active(p->kick, EV_TIMEOUT, 0);
}

/* ---- the interface ---- */

/* An answer known now, given from the loop like every answer. */
static void ready_add(struct callout_pool *p, const struct rcpt_answer *ans, struct waiter *w)
{
	struct flight *g = xcalloc(1, sizeof *g);

	g->ans = *ans;
	g->waiters = w;
	g->state = FL_DONE;
	TAILQ_INSERT_TAIL(&p->ready, g, link);
	pool_kick(p);
}

static void ready_drain(struct callout_pool *p)
{
	struct flight *g;
	while ((g = TAILQ_FIRST(&p->ready)) != NULL) {
		TAILQ_REMOVE(&p->ready, g, link);
		g->waiters->cb(g->waiters->arg, &g->ans);
		free(g->waiters);
		free(g);
	}
}

void callout_pool_lookup(struct callout_pool *p, const char *addr, callout_answer_cb cb, void *arg)
{
	struct waiter *w = xcalloc(1, sizeof *w);
	struct flight *f;

	w->cb = cb;
	w->arg = arg;
	memo_expire(p, now_ms());
	f = *table_slot(p, addr);
	if (f != NULL) {
		atomic_fetch_add(&p->o.counters->shared, 1);
		if (f->state == FL_DONE) {
			ready_add(p, &f->ans, w);
		} else {
			w->next = f->waiters;
			f->waiters = w;
		}
		return;
	}
	if (p->queued >= POOL_QUEUE_MAX) {
		struct rcpt_answer a;
		answer_set(p, &a, RCPT_UNAVAILABLE, "%s:%s: %zu addresses already waiting", p->host, p->port, p->queued);
		counters_add(p, RCPT_UNAVAILABLE);
		ready_add(p, &a, w);
		return;
	}
	f = xcalloc(1, sizeof *f);
	snprintf(f->addr, sizeof f->addr, "%s", addr);
	f->waiters = w;
	f->dom = domain_get(p, addr);
	table_add(p, f);
	domain_check_maybe(p, f->dom);
	flight_enqueue(p, f, false);
	pool_kick(p);
}

struct callout_pool *callout_pool_new(struct event_base *base, const struct callout_pool_opts *opts,
				      char *why, size_t whysz)
{
	struct callout_pool *p = xcalloc(1, sizeof *p);
	const char *err = NULL;

	p->dns = dns_resolver_new_opts(base, (unsigned)(opts->timeout_ms < 5000 ? opts->timeout_ms : 5000), 2, &err);
	if (p->dns == NULL) {
		snprintf(why, whysz, "cannot start the resolver: %s", err ? err : "?");
		free(p);
		return NULL;
	}
	p->base = base;
	p->o = *opts;
	p->o.max_conns = opts->max_conns ? opts->max_conns : 1;
	p->spec = xstrdup(opts->spec);
	p->host = xstrdup(opts->host);
	p->port = xstrdup(opts->port);
	p->sender = xstrdup(opts->sender ? opts->sender : "");
	p->helo = xstrdup(opts->helo ? opts->helo : "localhost");
	p->key = xcalloc(1, strlen(p->host) + strlen(p->port) + 2);
	sprintf(p->key, "%s:%s", p->host, p->port);
	p->ttls = xcalloc(opts->nttls + 1, sizeof *p->ttls);
	for (size_t i = 0; i < opts->nttls; i++)
		p->ttls[i] = (struct callout_domain_ttl){ xstrdup(opts->ttls[i].name), opts->ttls[i].positive_ttl_ms };
	p->o.ttls = p->ttls;
	p->health = backend_health_new();
	p->conns = xcalloc(p->o.max_conns, sizeof *p->conns);
	p->tsize = 256;
	p->table = xcalloc(p->tsize, sizeof *p->table);
	TAILQ_INIT(&p->queue);
	TAILQ_INIT(&p->memo);
	TAILQ_INIT(&p->ready);
	p->kick = event_new(base, -1, 0, pool_kick_cb, p);
	return p;
}

/* Answer everything still waiting ("shutting down") and free every flight and domain. */
static void pool_drain_all(struct callout_pool *p)
{
	struct flight *f;

	for (unsigned i = 0; i < p->o.max_conns; i++) {
		struct cconn *c = p->conns[i];
		if (c == NULL)
			continue;
		while ((f = TAILQ_FIRST(&c->batch)) != NULL) {
			TAILQ_REMOVE(&c->batch, f, link);
			answer_set(p, &f->ans, RCPT_UNAVAILABLE, "shutting down");
			flight_finish(p, f);
		}
		conn_close(c, c->st == CC_IDLE);
	}
	queue_fail_all(p, "shutting down");
	for (struct cdomain *d = p->domains, *n; d; d = n) {
		n = d->next;
		while ((f = TAILQ_FIRST(&d->parked)) != NULL) {
			TAILQ_REMOVE(&d->parked, f, link);
			flight_answer(p, f);
		}
		free(d);
	}
	ready_drain(p);
	while ((f = TAILQ_FIRST(&p->memo)) != NULL) {
		TAILQ_REMOVE(&p->memo, f, link);
		free(f);
	}
}

void callout_pool_free(struct callout_pool *p)
{
	if (p == NULL)
		return;
	p->closing = true;
	pool_drain_all(p);
	dns_resolver_free(p->dns);
	backend_health_free(p->health);
	event_free(p->kick);
	for (size_t i = 0; i < p->o.nttls; i++)
		free((char *)(uintptr_t)p->ttls[i].name);
	free(p->ttls);
	free(p->conns);
	free(p->table);
	free(p->spec);
	free(p->host);
	free(p->port);
	free(p->sender);
	free(p->helo);
	free(p->key);
	free(p);
}
