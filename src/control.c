/* control.c - the control socket: accepts on the main thread's loop, checks each peer's
 * credentials, reads request lines and answers them from what the server passed in (status,
 * reload, the verdict cache). Requests are small and rare: a connection is a bufferevent, and
 * `cache show` on a store that answers later waits for its callback without blocking the loop. */
#include "control.h"

#include <errno.h>
#include <grp.h>
#include <limits.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/listener.h>

#include "cache_ops.h"
#include "log.h"
#include "runtime.h"
#include "unix_listen.h"
#include "util.h"
#include "vcache.h"
#include "verify.h"

#define CONTROL_MAX_CONNECTIONS 32
#define CONTROL_IDLE_SECONDS 60
#define CONTROL_PEER_GROUPS_MAX 256

struct control_conn {
	struct control *ctl;
	struct bufferevent *bev;
	struct control_conn *next;
	struct vcache_query *pending;  /* cache show waiting for the store */
	bool in_get, answered, closing;
	bool denied;                   /* refused: the answer said so; wait for the client to hang up */
	char key[CACHE_OPS_KEY_MAX];
};

struct control {
	char *path;
	int fd;                        /* until control_start hands it to the listener */
	dev_t dev;                     /* the socket file made, to remove only that one */
	ino_t ino;
	gid_t allowed;
	uid_t self;
	struct control_deps deps;
	struct evconnlistener *listener;
	struct control_conn *conns;
	unsigned nconns;
};

struct control *control_open(const char *path, unsigned mode, uid_t uid, gid_t gid, gid_t allowed, char *err,
			     size_t errlen)
{
	int fd = unix_listen(path, mode, uid, gid, err, errlen);
	if (fd < 0)
		return NULL;
	struct control *c = xcalloc(1, sizeof *c);
	struct stat st;
	c->path = xstrdup(path);
	c->fd = fd;
	c->allowed = allowed;
	if (stat(path, &st) == 0) {
		c->dev = st.st_dev;
		c->ino = st.st_ino;
	}
	return c;
}

/* ---- replies ---- */

/* Send text (lines) dot-stuffed, then ". status". */
static void control_reply(struct control_conn *cc, const char *text, size_t len, int status)
{
	struct evbuffer *out = bufferevent_get_output(cc->bev);

	while (len > 0) {
		const char *nl = memchr(text, '\n', len);
		size_t n = nl ? (size_t)(nl - text) : len;
		if (n > 0 && text[0] == '.')
			evbuffer_add(out, ".", 1);
		evbuffer_add(out, text, n);
		evbuffer_add(out, "\n", 1);
		text += nl ? n + 1 : n;
		len -= nl ? n + 1 : n;
	}
	evbuffer_add_printf(out, ". %d\n", status);
}

/* A reply built with fprintf: out = control_text_open(&t); ...; control_text_send(cc, &t, status). */
struct control_text {
	char *buf;
	size_t len;
	FILE *f;
};

static FILE *control_text_open(struct control_text *t)
{
	*t = (struct control_text){ 0 };
	t->f = open_memstream(&t->buf, &t->len);
	if (t->f == NULL)
		abort(); /* out of memory */
	return t->f;
}

static void control_text_send(struct control_conn *cc, struct control_text *t, int status)
{
	fclose(t->f);
	control_reply(cc, t->buf, t->len, status);
	free(t->buf);
}

/* ---- connections ---- */

static void control_conn_free(struct control_conn *cc)
{
	struct control *c = cc->ctl;

	for (struct control_conn **p = &c->conns; *p; p = &(*p)->next) {
		if (*p == cc) {
			*p = cc->next;
			break;
		}
	}
	c->nconns--;
	if (cc->pending && c->deps.cache)
		vcache_cancel(c->deps.cache, cc->pending);
	bufferevent_free(cc->bev);
	free(cc);
}

static void control_read_cb(struct bufferevent *bev, void *arg);

static void control_on_show(void *arg, int found, const struct vcache_entry *e)
{
	struct control_conn *cc = arg;
	struct control_text t;

	cache_ops_print_entry(control_text_open(&t), cc->key, found, e);
	control_text_send(cc, &t, CACHE_OPS_OK);
	cc->pending = NULL;
	cc->answered = true;
	if (!cc->in_get) { /* answered later: go on with what the client sent meanwhile */
		bufferevent_enable(cc->bev, EV_READ);
		control_read_cb(cc->bev, cc);
	}
}

/* After a purge: the sources' own short memories go too, so the next answer is asked for. */
static void control_forget(struct control *c)
{
	struct bs_runtime *rt = c->deps.runtime(c->deps.arg);
	if (rt->reg)
		rcpt_registry_forget(rt->reg);
	runtime_unref(rt);
}

/* cache OP [ARG] on the daemon's cache, with the running configuration's domain rules. */
static void control_cache(struct control_conn *cc, const char *op, const char *arg)
{
	struct control *c = cc->ctl;
	struct control_text t;
	FILE *out = control_text_open(&t);
	const char *delims;
	int rc;

	if (c->deps.cache == NULL) {
		fprintf(out, "the daemon has no verdict cache: no domain verifies recipients\n");
		control_text_send(cc, &t, CACHE_OPS_FAILED);
		return;
	}
	struct bs_runtime *rt = c->deps.runtime(c->deps.arg);
	rc = op ? cache_ops_parse(rt->cfg, op, arg, out, cc->key, sizeof cc->key, &delims) : CACHE_OPS_USAGE;
	runtime_unref(rt);
	if (op == NULL)
		fprintf(out, "usage: cache stats | show ADDR | purge ADDR|@DOMAIN | flush\n");
	if (rc != CACHE_OPS_OK) {
		control_text_send(cc, &t, rc);
		return;
	}
	if (strcmp(op, "show") == 0) {
		fclose(t.f);
		free(t.buf);
		cc->answered = false;
		cc->in_get = true;
		struct vcache_query *q = vcache_get(c->deps.cache, c->deps.base, cc->key, control_on_show, cc);
		cc->in_get = false;
		if (!cc->answered) {
			cc->pending = q;
			bufferevent_disable(cc->bev, EV_READ); /* one request at a time */
		}
		return;
	}
	if (strcmp(op, "stats") == 0) {
		rc = cache_ops_stats(c->deps.cache, out);
		struct bs_runtime *now = c->deps.runtime(c->deps.arg);
		if (now->verifier)
			verifier_stats(now->verifier, out);
		runtime_unref(now);
	} else if (strcmp(op, "purge") == 0) {
		rc = cache_ops_purge(c->deps.cache, cc->key, delims, out);
		control_forget(c);
		log_notice("control: cache purge %s: %s", cc->key, rc == CACHE_OPS_OK ? "done" : "failed");
	} else {
		rc = cache_ops_flush(c->deps.cache, out);
		control_forget(c);
		log_notice("control: cache flush: %s", rc == CACHE_OPS_OK ? "done" : "failed");
	}
	control_text_send(cc, &t, rc);
}

static const char control_help[] =
	"commands: status | reload | cache stats | cache show ADDR | cache purge ADDR|@DOMAIN | cache flush | help\n";

/* One request line (NUL-terminated, without its LF). */
static void control_request(struct control_conn *cc, char *line)
{
	struct control *c = cc->ctl;
	struct control_text t;
	char *save = NULL;
	char *verb = strtok_r(line, " \t\r", &save);
	char *op = verb ? strtok_r(NULL, " \t\r", &save) : NULL;
	char *arg = op ? strtok_r(NULL, " \t\r", &save) : NULL;
	char *extra = arg ? strtok_r(NULL, " \t\r", &save) : NULL;

	if (verb == NULL) {
		control_reply(cc, control_help, sizeof control_help - 1, CONTROL_USAGE);
	} else if (strcmp(verb, "cache") == 0 && extra == NULL) {
		control_cache(cc, op, arg);
	} else if (op != NULL) {
		control_reply(cc, control_help, sizeof control_help - 1, CONTROL_USAGE);
	} else if (strcmp(verb, "status") == 0) {
		c->deps.status(c->deps.arg, control_text_open(&t));
		control_text_send(cc, &t, CONTROL_OK);
	} else if (strcmp(verb, "reload") == 0) {
		log_notice("control: reload requested");
		int rc = c->deps.reload(c->deps.arg, control_text_open(&t));
		control_text_send(cc, &t, rc);
	} else {
		control_reply(cc, control_help, sizeof control_help - 1, strcmp(verb, "help") == 0 ? CONTROL_OK : CONTROL_USAGE);
	}
}

static void control_read_cb(struct bufferevent *bev, void *arg)
{
	struct control_conn *cc = arg;
	struct evbuffer *in = bufferevent_get_input(bev);

	if (cc->denied) { /* what it sends is not read, only drained */
		evbuffer_drain(in, evbuffer_get_length(in));
		return;
	}
	while (!cc->closing && cc->pending == NULL) {
		size_t len;
		char *line = evbuffer_readln(in, &len, EVBUFFER_EOL_LF);
		if (line == NULL)
			break;
		control_request(cc, line);
		free(line);
	}
	if (!cc->closing && evbuffer_get_length(in) > CONTROL_LINE_MAX) {
		const char *msg = "request line too long\n";
		control_reply(cc, msg, strlen(msg), CONTROL_USAGE);
		cc->closing = true;
		bufferevent_disable(bev, EV_READ);
	}
}

static void control_write_cb(struct bufferevent *bev, void *arg)
{
	struct control_conn *cc = arg;

	if (evbuffer_get_length(bufferevent_get_output(bev)) > 0)
		return;
	if (cc->denied) /* closing at once could reset the connection before the client reads why */
		shutdown(bufferevent_getfd(bev), SHUT_WR);
	else if (cc->closing)
		control_conn_free(cc);
}

static void control_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct control_conn *cc = arg;

	(void)bev;
	/* EOF after the last request, an error or the idle timeout: either way the client is done */
	if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR | BEV_EVENT_TIMEOUT))
		control_conn_free(cc);
}

/* Root, the daemon's own user, or a member (primary or supplementary) of the allowed group. */
static bool control_peer_allowed(const struct control *c, int fd, struct ucred *cred)
{
	socklen_t len = sizeof *cred;

	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, cred, &len) != 0)
		return false;
	if (cred->uid == 0 || cred->uid == c->self || cred->gid == c->allowed)
		return true;
	gid_t groups[CONTROL_PEER_GROUPS_MAX];
	len = sizeof groups;
	if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups, &len) != 0)
		return false; /* more groups than we read: not worth a second call */
	for (size_t i = 0; i < len / sizeof groups[0]; i++)
		if (groups[i] == c->allowed)
			return true;
	return false;
}

static void control_accept_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int salen,
			      void *arg)
{
	struct control *c = arg;
	struct ucred cred = { .pid = 0, .uid = (uid_t)-1, .gid = (gid_t)-1 };

	(void)l;
	(void)sa;
	(void)salen;
	if (c->nconns >= CONTROL_MAX_CONNECTIONS) {
		log_warn("control: %u connections open already; closing a new one", c->nconns);
		close(fd);
		return;
	}
	bool allowed = control_peer_allowed(c, fd, &cred);
	struct control_conn *cc = xcalloc(1, sizeof *cc);
	cc->ctl = c;
	cc->bev = bufferevent_socket_new(c->deps.base, fd, BEV_OPT_CLOSE_ON_FREE);
	cc->next = c->conns;
	c->conns = cc;
	c->nconns++;
	bufferevent_setcb(cc->bev, control_read_cb, control_write_cb, control_event_cb, cc);
	struct timeval idle = { CONTROL_IDLE_SECONDS, 0 };
	bufferevent_set_timeouts(cc->bev, &idle, &idle);
	if (!allowed) {
		char msg[160];
		struct group *gr = getgrgid(c->allowed);
		log_notice("control: refused pid %ld uid %ld: neither root, nor the daemon's user, nor in group %s",
			   (long)cred.pid, (long)(int)cred.uid, gr ? gr->gr_name : "?");
		snprintf(msg, sizeof msg, "access denied: only root, the daemon's user and members of group %s\n",
			 gr ? gr->gr_name : "?");
		control_reply(cc, msg, strlen(msg), CONTROL_UNREACHABLE);
		cc->denied = true;
		bufferevent_enable(cc->bev, EV_READ | EV_WRITE);
		return;
	}
	bufferevent_enable(cc->bev, EV_READ | EV_WRITE);
}

int control_start(struct control *c, const struct control_deps *deps)
{
	c->deps = *deps;
	c->self = geteuid();
	if (c->allowed == (gid_t)-1)
		c->allowed = getegid();
	c->listener = evconnlistener_new(deps->base, control_accept_cb, c, LEV_OPT_CLOSE_ON_FREE, -1, c->fd);
	if (c->listener == NULL)
		return -1;
	c->fd = -1;
	return 0;
}

void control_close(struct control *c)
{
	struct stat st;

	if (c == NULL)
		return;
	while (c->conns)
		control_conn_free(c->conns);
	if (c->listener)
		evconnlistener_free(c->listener);
	else if (c->fd >= 0)
		close(c->fd);
	/* remove the file only if it is still ours (not one a newer backstop made meanwhile) */
	if (stat(c->path, &st) == 0 && st.st_dev == c->dev && st.st_ino == c->ino && unlink(c->path) != 0)
		log_debug("unlink %s: %s", c->path, strerror(errno));
	free(c->path);
	free(c);
}
