/* redis_conn.c - an asynchronous Redis connection: connect (through a Sentinel first when the
 * target names a master), set up (AUTH, SELECT, ROLE must say master), then pipelined commands
 * answered in order from a FIFO; replies parsed by hiredis's redisReader. Every failure drops the
 * connection, answers what was pending with NULL and starts the backoff; the next command after
 * it (or the subscriber's timer) connects again, asking the Sentinels anew. */
#include "redis_conn.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>

#include "log.h"
#include "util.h"

#define REDIS_PENDING_MAX 10000
#define REDIS_BACKOFF_MIN_MS 100
#define REDIS_BACKOFF_MAX_MS 5000

enum redis_state { RC_DOWN, RC_SENTINEL, RC_CONNECTING, RC_SETUP, RC_READY };

struct redis_cmd {
	struct redis_cmd *next;
	redis_reply_cb cb;   /* NULL: cancelled */
	void *arg;
};

struct redis_conn {
	struct event_base *base;
	const struct redis_target *t;
	redis_state_cb state_cb;
	void *state_arg;
	enum redis_state state;
	struct bufferevent *bev;
	redisReader *reader;
	struct redis_cmd *head, *tail;
	size_t npending, setup_left;
	struct redis_cmd *whead, *wtail; /* asked while connecting: sent once ready */
	struct evbuffer *waiting;        /* their bytes */
	size_t nwaiting;
	uint64_t next_attempt_ms, backoff_ms;
	size_t sentinel_i, sentinel_tries;
	bool have_master;
	struct redis_endpoint master;
	/* subscriber */
	char *channel;
	void (*sub_cb)(void *arg, const char *msg, size_t len);
	void *sub_arg;
	struct event *retry_ev;
};

static void redis_read_cb(struct bufferevent *bev, void *arg);
static void redis_event_cb(struct bufferevent *bev, short what, void *arg);
static void redis_connect_to(struct redis_conn *c, const struct redis_endpoint *ep, bool tls);

static const char *redis_target_text(const struct redis_target *t, char *buf, size_t len)
{
	snprintf(buf, len, "%s%s%s", t->master[0] ? "sentinel master " : "", t->master[0] ? t->master : "",
		 t->master[0] ? "" : t->hosts[0].name);
	return buf;
}

/* ---- the FIFO ---- */

static struct redis_cmd *redis_push(struct redis_conn *c, redis_reply_cb cb, void *arg)
{
	struct redis_cmd *cmd = xcalloc(1, sizeof *cmd);
	cmd->cb = cb;
	cmd->arg = arg;
	if (c->tail)
		c->tail->next = cmd;
	else
		c->head = cmd;
	c->tail = cmd;
	c->npending++;
	return cmd;
}

static struct redis_cmd *redis_pop(struct redis_conn *c)
{
	struct redis_cmd *cmd = c->head;
	if (cmd) {
		c->head = cmd->next;
		if (c->head == NULL)
			c->tail = NULL;
		c->npending--;
	}
	return cmd;
}

static int redis_write(struct redis_conn *c, int argc, const char **argv, const size_t *argvlen)
{
	char *out = NULL;
	int n = redisFormatCommandArgv(&out, argc, argv, argvlen);
	if (n < 0)
		return -1;
	bufferevent_write(c->bev, out, (size_t)n);
	redisFreeCommand(out);
	return 0;
}

static void redis_send_internal(struct redis_conn *c, redis_reply_cb cb, int argc, const char **argv)
{
	size_t lens[8];
	for (int i = 0; i < argc; i++)
		lens[i] = strlen(argv[i]);
	redis_push(c, cb, c);
	redis_write(c, argc, argv, lens);
}

/* ---- failure, backoff ---- */

static void redis_retry_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	redis_conn_kick(arg);
}

static void redis_drop(struct redis_conn *c)
{
	if (c->bev) {
		bufferevent_free(c->bev);
		c->bev = NULL;
	}
	if (c->reader) {
		redisReaderFree(c->reader);
		c->reader = NULL;
	}
}

static void redis_fail(struct redis_conn *c, const char *why)
{
	bool was_up = c->state == RC_READY, sentinel = c->state == RC_SENTINEL;
	char t[512];

	log_debug("redis %s: %s", redis_target_text(c->t, t, sizeof t), why);
	redis_drop(c);
	if (sentinel && ++c->sentinel_tries < c->t->nhosts) { /* the next sentinel at once */
		c->sentinel_i = (c->sentinel_i + 1) % c->t->nhosts;
		redis_connect_to(c, &c->t->hosts[c->sentinel_i], false);
		return;
	}
	c->state = RC_DOWN;
	c->have_master = false; /* after a failover the Sentinels know the new one */
	c->backoff_ms = c->backoff_ms ? c->backoff_ms * 2 : REDIS_BACKOFF_MIN_MS;
	if (c->backoff_ms > REDIS_BACKOFF_MAX_MS)
		c->backoff_ms = REDIS_BACKOFF_MAX_MS;
	c->next_attempt_ms = now_ms() + c->backoff_ms;
	struct redis_cmd *list = c->head, *wlist = c->whead;
	c->head = c->tail = c->whead = c->wtail = NULL;
	c->npending = c->nwaiting = 0;
	if (c->waiting)
		evbuffer_drain(c->waiting, evbuffer_get_length(c->waiting));
	for (int round = 0; round < 2; round++, list = wlist) {
		for (struct redis_cmd *cmd = list, *next; cmd; cmd = next) {
			next = cmd->next;
			if (cmd->cb && cmd->arg != c)
				cmd->cb(cmd->arg, NULL);
			free(cmd);
		}
	}
	if (c->retry_ev) {
		struct timeval tv = { (time_t)(c->backoff_ms / 1000), (suseconds_t)(c->backoff_ms % 1000) * 1000 };
		evtimer_add(c->retry_ev, &tv);
	}
	if (c->state_cb && (was_up || c->backoff_ms == REDIS_BACKOFF_MIN_MS))
		c->state_cb(c->state_arg, false);
}

/* ---- set-up ---- */

static void redis_ready(struct redis_conn *c)
{
	c->state = RC_READY;
	c->backoff_ms = 0;
	c->sentinel_tries = 0;
	if (c->channel) {
		const char *argv[2] = { "SUBSCRIBE", c->channel };
		size_t lens[2] = { 9, strlen(c->channel) };
		redis_write(c, 2, argv, lens);
		bufferevent_set_timeouts(c->bev, NULL, NULL);
	} else if (c->whead) { /* what was asked while connecting, in order */
		if (c->tail)
			c->tail->next = c->whead;
		else
			c->head = c->whead;
		c->tail = c->wtail;
		c->npending += c->nwaiting;
		c->whead = c->wtail = NULL;
		c->nwaiting = 0;
		bufferevent_write_buffer(c->bev, c->waiting);
	} else {
		bufferevent_disable(c->bev, EV_READ); /* idle: nothing keeps the loop alive */
	}
	if (c->state_cb)
		c->state_cb(c->state_arg, true);
}

static void redis_setup_reply(void *arg, const redisReply *r)
{
	struct redis_conn *c = arg;

	if (r == NULL)
		return;
	if (r->type == REDIS_REPLY_ERROR) {
		log_warn("redis: set-up refused: %s", r->str);
		redis_fail(c, "set-up refused");
		return;
	}
	if (r->type == REDIS_REPLY_ARRAY && (r->elements == 0 || r->element[0]->type != REDIS_REPLY_STRING ||
					     strcmp(r->element[0]->str, "master") != 0)) {
		redis_fail(c, "not the master (ROLE)");
		return;
	}
	if (--c->setup_left == 0)
		redis_ready(c);
}

static void redis_setup(struct redis_conn *c)
{
	char db[16];

	c->state = RC_SETUP;
	c->setup_left = 0;
	if (c->t->password) {
		const char *argv[2] = { "AUTH", c->t->password };
		redis_send_internal(c, redis_setup_reply, 2, argv);
		c->setup_left++;
	}
	if (c->t->db) {
		snprintf(db, sizeof db, "%u", c->t->db);
		const char *argv[2] = { "SELECT", db };
		redis_send_internal(c, redis_setup_reply, 2, argv);
		c->setup_left++;
	}
	if (c->t->master[0] || c->setup_left == 0) { /* ROLE: a demoted master must not be used */
		const char *argv[1] = { "ROLE" };
		redis_send_internal(c, redis_setup_reply, 1, argv);
		c->setup_left++;
	}
}

static int redis_endpoint_from(const char *ip, const char *port, struct redis_endpoint *ep)
{
	memset(ep, 0, sizeof *ep);
	snprintf(ep->name, sizeof ep->name, "%s", ip);
	struct sockaddr_in *s4 = (struct sockaddr_in *)&ep->sa;
	struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ep->sa;
	unsigned long p = strtoul(port, NULL, 10);
	if (p == 0 || p > 65535)
		return -1;
	if (inet_pton(AF_INET, ip, &s4->sin_addr) == 1) {
		s4->sin_family = AF_INET;
		s4->sin_port = htons((uint16_t)p);
		ep->salen = sizeof *s4;
		return 0;
	}
	if (inet_pton(AF_INET6, ip, &s6->sin6_addr) == 1) {
		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons((uint16_t)p);
		ep->salen = sizeof *s6;
		return 0;
	}
	return -1;
}

static void redis_sentinel_reply(void *arg, const redisReply *r)
{
	struct redis_conn *c = arg;

	if (r == NULL)
		return;
	if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 || r->element[0]->type != REDIS_REPLY_STRING ||
	    r->element[1]->type != REDIS_REPLY_STRING ||
	    redis_endpoint_from(r->element[0]->str, r->element[1]->str, &c->master) != 0) {
		redis_fail(c, "the sentinel does not know the master");
		return;
	}
	c->have_master = true;
	redis_drop(c);
	redis_connect_to(c, &c->master, c->t->tls);
}

/* ---- I/O ---- */

static void redis_connect_to(struct redis_conn *c, const struct redis_endpoint *ep, bool tls)
{
	struct timeval tv = { (time_t)(c->t->timeout_ms / 1000), (suseconds_t)(c->t->timeout_ms % 1000) * 1000 };
	bool sentinel = c->t->master[0] && !c->have_master;

	c->state = sentinel ? RC_SENTINEL : RC_CONNECTING;
	if (tls) {
		SSL *ssl = SSL_new(c->t->ssl_ctx);
		if (ssl) {
			char name[sizeof c->t->hosts[0].name]; /* the OpenSSL macro casts away const */
			memcpy(name, c->t->hosts[0].name, sizeof name);
			SSL_set_tlsext_host_name(ssl, name);
			SSL_set1_host(ssl, name);
			c->bev = bufferevent_openssl_socket_new(c->base, -1, ssl, BUFFEREVENT_SSL_CONNECTING,
								BEV_OPT_CLOSE_ON_FREE);
		}
	} else {
		c->bev = bufferevent_socket_new(c->base, -1, BEV_OPT_CLOSE_ON_FREE);
	}
	c->reader = redisReaderCreate();
	if (c->bev == NULL || c->reader == NULL) {
		redis_fail(c, "out of resources");
		return;
	}
	bufferevent_setcb(c->bev, redis_read_cb, NULL, redis_event_cb, c);
	bufferevent_set_timeouts(c->bev, &tv, &tv);
	bufferevent_enable(c->bev, EV_READ | EV_WRITE);
	if (bufferevent_socket_connect(c->bev, (const struct sockaddr *)&ep->sa, (int)ep->salen) != 0)
		redis_fail(c, "connect failed");
}

static void redis_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct redis_conn *c = arg;
	(void)bev;

	if (what & BEV_EVENT_CONNECTED) {
		if (c->state == RC_SENTINEL) {
			const char *argv[3] = { "SENTINEL", "get-master-addr-by-name", c->t->master };
			redis_send_internal(c, redis_sentinel_reply, 3, argv);
		} else {
			redis_setup(c);
		}
		return;
	}
	redis_fail(c, what & BEV_EVENT_TIMEOUT ? "timeout" : what & BEV_EVENT_EOF ? "connection closed" : "connection error");
}

/* One reply: a subscriber's message, or the answer to the oldest pending command. */
static bool redis_dispatch(struct redis_conn *c, redisReply *r)
{
	if (c->channel && c->state == RC_READY) {
		if (r->type == REDIS_REPLY_ARRAY && r->elements == 3 && r->element[0]->type == REDIS_REPLY_STRING &&
		    strcmp(r->element[0]->str, "message") == 0 && r->element[2]->type == REDIS_REPLY_STRING)
			c->sub_cb(c->sub_arg, r->element[2]->str, r->element[2]->len);
		return true;
	}
	struct redis_cmd *cmd = redis_pop(c);
	if (cmd == NULL) {
		redis_fail(c, "unexpected reply");
		return false;
	}
	enum redis_state before = c->state;
	if (cmd->cb)
		cmd->cb(cmd->arg, r);
	free(cmd);
	if (c->state != before && c->state != RC_READY)
		return false; /* the connection was dropped or replaced from the callback */
	if (r->type == REDIS_REPLY_ERROR && strncmp(r->str, "READONLY", 8) == 0) {
		redis_fail(c, "the server is a replica now");
		return false;
	}
	return true;
}

static void redis_read_cb(struct bufferevent *bev, void *arg)
{
	struct redis_conn *c = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	char buf[16384];
	void *reply;

	while (evbuffer_get_length(in) > 0) {
		int n = evbuffer_remove(in, buf, sizeof buf);
		if (n <= 0 || redisReaderFeed(c->reader, buf, (size_t)n) != REDIS_OK) {
			redis_fail(c, "bad reply");
			return;
		}
	}
	for (;;) {
		redisReader *reader = c->reader;
		if (redisReaderGetReply(reader, &reply) != REDIS_OK) {
			redis_fail(c, "protocol error");
			return;
		}
		if (reply == NULL)
			break;
		bool go_on = redis_dispatch(c, reply);
		freeReplyObject(reply);
		if (!go_on || c->reader != reader)
			return;
	}
	if (c->state == RC_READY && c->npending == 0 && c->channel == NULL)
		bufferevent_disable(c->bev, EV_READ);
}

/* ---- the interface ---- */

struct redis_conn *redis_conn_new(struct event_base *base, const struct redis_target *t, redis_state_cb state_cb,
				  void *state_arg)
{
	struct redis_conn *c = xcalloc(1, sizeof *c);
	c->base = base;
	c->t = t;
	c->state_cb = state_cb;
	c->state_arg = state_arg;
	return c;
}

void redis_conn_free(struct redis_conn *c)
{
	if (c == NULL)
		return;
	c->state_cb = NULL;
	if (c->retry_ev)
		event_free(c->retry_ev);
	c->retry_ev = NULL;
	redis_fail(c, "closed");
	if (c->waiting)
		evbuffer_free(c->waiting);
	free(c->channel);
	free(c);
}

bool redis_conn_ready(const struct redis_conn *c)
{
	return c->state == RC_READY;
}

bool redis_conn_failed(const struct redis_conn *c)
{
	return c->state == RC_DOWN;
}

void redis_conn_retry_now(struct redis_conn *c)
{
	c->next_attempt_ms = 0;
}

void redis_conn_kick(struct redis_conn *c)
{
	if (c->state != RC_DOWN || now_ms() < c->next_attempt_ms)
		return;
	c->sentinel_tries = 0;
	if (c->t->master[0] && !c->have_master)
		redis_connect_to(c, &c->t->hosts[c->sentinel_i], false);
	else
		redis_connect_to(c, c->t->master[0] ? &c->master : &c->t->hosts[0], c->t->tls);
}

struct redis_cmd *redis_conn_command(struct redis_conn *c, redis_reply_cb cb, void *arg, int argc,
				     const char **argv, const size_t *argvlen)
{
	if (c->state == RC_DOWN)
		redis_conn_kick(c);
	if (c->state == RC_DOWN || c->npending + c->nwaiting >= REDIS_PENDING_MAX)
		return NULL;
	if (c->state != RC_READY) { /* connecting: sent once ready (or answered NULL if it fails) */
		char *out = NULL;
		int n = redisFormatCommandArgv(&out, argc, argv, argvlen);
		if (n < 0)
			return NULL;
		if (c->waiting == NULL)
			c->waiting = evbuffer_new();
		evbuffer_add(c->waiting, out, (size_t)n);
		redisFreeCommand(out);
		struct redis_cmd *cmd = xcalloc(1, sizeof *cmd);
		cmd->cb = cb;
		cmd->arg = arg;
		if (c->wtail)
			c->wtail->next = cmd;
		else
			c->whead = cmd;
		c->wtail = cmd;
		c->nwaiting++;
		return cmd;
	}
	if (c->npending >= REDIS_PENDING_MAX || redis_write(c, argc, argv, argvlen) != 0)
		return NULL;
	if (c->npending == 0)
		bufferevent_enable(c->bev, EV_READ); /* with the reply timeout */
	return redis_push(c, cb, arg);
}

struct redis_cmd *redis_conn_commandv(struct redis_conn *c, redis_reply_cb cb, void *arg, int argc,
				      const char **argv)
{
	size_t lens[16];
	if (argc > 16)
		return NULL;
	for (int i = 0; i < argc; i++)
		lens[i] = strlen(argv[i]);
	return redis_conn_command(c, cb, arg, argc, argv, lens);
}

void redis_cmd_cancel(struct redis_cmd *cmd)
{
	if (cmd)
		cmd->cb = NULL;
}

void redis_conn_subscribe(struct redis_conn *c, const char *channel, void (*cb)(void *arg, const char *msg, size_t len),
			  void *arg)
{
	c->channel = xstrdup(channel);
	c->sub_cb = cb;
	c->sub_arg = arg;
	c->retry_ev = evtimer_new(c->base, redis_retry_cb, c);
	redis_conn_kick(c);
}

int redis_endpoint_resolve(const char *text, size_t len, const char *default_port, struct redis_endpoint *ep,
			   char *why, size_t whysz)
{
	char host[256], port[8];
	const char *colon;
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV }, *res = NULL;

	memset(ep, 0, sizeof *ep);
	if (len == 0 || len >= sizeof host) {
		snprintf(why, whysz, "a host is needed");
		return -1;
	}
	if (text[0] == '[') {
		const char *close = memchr(text, ']', len);
		if (close == NULL) {
			snprintf(why, whysz, "unclosed [");
			return -1;
		}
		snprintf(host, sizeof host, "%.*s", (int)(close - text - 1), text + 1);
		colon = close + 1 < text + len && close[1] == ':' ? close + 1 : NULL;
	} else {
		colon = memchr(text, ':', len);
		snprintf(host, sizeof host, "%.*s", (int)(colon ? (size_t)(colon - text) : len), text);
	}
	size_t plen = colon ? (size_t)(text + len - colon - 1) : 0;
	if (colon && (plen == 0 || plen >= sizeof port)) {
		snprintf(why, whysz, "bad port");
		return -1;
	}
	snprintf(port, sizeof port, "%.*s", (int)plen, colon ? colon + 1 : "");
	if (!colon)
		snprintf(port, sizeof port, "%s", default_port);
	int rc = getaddrinfo(host, port, &hints, &res);
	if (rc != 0) {
		snprintf(why, whysz, "%s: %s", host, gai_strerror(rc));
		return -1;
	}
	snprintf(ep->name, sizeof ep->name, "%s", host);
	memcpy(&ep->sa, res->ai_addr, res->ai_addrlen);
	ep->salen = res->ai_addrlen;
	freeaddrinfo(res);
	return 0;
}
