/* ldap_conn.c - LDAP connections for one [ldap NAME] section: settings and password file,
 * connect with failover across the URIs in order (StartTLS, CA, simple bind), re-connect after
 * loss, and the pool of lookup threads that keeps blocking libldap calls off the event loops. */
#include "ldap_conn.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "util.h"

#define PASSWORD_MAX 1024
#define RECONNECT_BACKOFF_MS 500 /* after every URI failed, answer at once for this long */

struct ldap_conn {
	const struct ldap_conn_cfg *cfg;
	LDAP *ld;               /* NULL when not connected */
	size_t uri_index;       /* URI of ld */
	uint64_t retry_at_ms;   /* no connect attempt before this (backoff after failure) */
	char last_err[256];     /* why the last connect failed, repeated during the backoff */
};

/* ---- settings ---- */

static int read_password(const char *path, char **out, char *why, size_t whysz)
{
	char buf[PASSWORD_MAX + 2];
	struct stat st;
	ssize_t n;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0) {
		snprintf(why, whysz, "bind_password_file %s: %s", path, strerror(errno));
		return -1;
	}
	if (fstat(fd, &st) == 0 && (st.st_mode & S_IROTH))
		log_warn("ldap: bind_password_file %s is readable by everyone", path);
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n < 0 || n > PASSWORD_MAX) {
		snprintf(why, whysz, "bind_password_file %s: %s", path,
			 n < 0 ? strerror(errno) : "longer than 1024 octets");
		return -1;
	}
	while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
		n--;
	if (n == 0 || memchr(buf, '\0', (size_t)n) != NULL) {
		snprintf(why, whysz, "bind_password_file %s: %s", path,
			 n == 0 ? "empty (an empty password would be an unauthenticated bind)"
				: "holds a NUL octet");
		explicit_bzero(buf, sizeof(buf));
		return -1;
	}
	*out = xstrndup(buf, (size_t)n);
	explicit_bzero(buf, sizeof(buf));
	return 0;
}

static int check_uri(const char *uri, char *why, size_t whysz)
{
	LDAPURLDesc *lud = NULL;
	int ok = ldap_url_parse(uri, &lud) == LDAP_URL_SUCCESS;

	if (ok)
		ok = strcmp(lud->lud_scheme, "ldap") == 0 || strcmp(lud->lud_scheme, "ldaps") == 0 ||
		     strcmp(lud->lud_scheme, "ldapi") == 0;
	if (lud != NULL)
		ldap_free_urldesc(lud);
	if (!ok)
		snprintf(why, whysz, "uri %s: not an ldap://, ldaps:// or ldapi:// URI", uri);
	return ok ? 0 : -1;
}

static char *dup_or_null(const char *s)
{
	return (s != NULL && s[0] != '\0') ? xstrdup(s) : NULL;
}

struct ldap_conn_cfg *ldap_conn_cfg_new(const struct bs_ldap *l, char *why, size_t whysz)
{
	struct ldap_conn_cfg *cfg = xcalloc(1, sizeof(*cfg));

	cfg->name = xstrdup(l->name);
	if (l->uri.n == 0) {
		snprintf(why, whysz, "[ldap %s]: no uri", l->name);
		goto fail;
	}
	cfg->uris = xcalloc(l->uri.n, sizeof(char *));
	for (size_t i = 0; i < l->uri.n; i++) {
		cfg->uris[cfg->nuris++] = xstrdup(l->uri.items[i]);
		if (check_uri(l->uri.items[i], why, whysz) != 0)
			goto fail;
	}
	cfg->starttls = l->starttls;
	cfg->tls_ca = dup_or_null(l->tls_ca);
	cfg->bind_dn = dup_or_null(l->bind_dn);
	cfg->base = xstrdup(l->base != NULL ? l->base : "");
	cfg->timeout_ms = l->timeout_ms ? l->timeout_ms : 5000;
	cfg->connections = l->connections ? (unsigned)l->connections : 1;
	if (cfg->bind_dn != NULL && (l->bind_password_file == NULL || l->bind_password_file[0] == '\0')) {
		snprintf(why, whysz, "[ldap %s]: bind_dn needs bind_password_file", l->name);
		goto fail;
	}
	if (cfg->bind_dn != NULL && read_password(l->bind_password_file, &cfg->password, why, whysz) != 0)
		goto fail;
	return cfg;
fail:
	ldap_conn_cfg_free(cfg);
	return NULL;
}

void ldap_conn_cfg_free(struct ldap_conn_cfg *cfg)
{
	if (cfg == NULL)
		return;
	for (size_t i = 0; i < cfg->nuris; i++)
		free(cfg->uris[i]);
	free(cfg->uris);
	if (cfg->password != NULL) {
		explicit_bzero(cfg->password, strlen(cfg->password));
		free(cfg->password);
	}
	free(cfg->name);
	free(cfg->tls_ca);
	free(cfg->bind_dn);
	free(cfg->base);
	free(cfg);
}

/* ---- one connection ---- */

struct ldap_conn *ldap_conn_new(const struct ldap_conn_cfg *cfg)
{
	struct ldap_conn *c = xcalloc(1, sizeof(*c));
	c->cfg = cfg;
	return c;
}

static void conn_drop(struct ldap_conn *c)
{
	if (c->ld != NULL)
		ldap_unbind_ext_s(c->ld, NULL, NULL);
	c->ld = NULL;
}

void ldap_conn_free(struct ldap_conn *c)
{
	if (c == NULL)
		return;
	conn_drop(c);
	free(c);
}

LDAP *ldap_conn_handle(struct ldap_conn *c)
{
	return c->ld;
}

const char *ldap_conn_uri(const struct ldap_conn *c)
{
	return c->ld != NULL ? c->cfg->uris[c->uri_index] : "";
}

/* "URI: <libldap's text>[ (<server's diagnostic>)]" */
static void conn_error(LDAP *ld, const char *uri, int rc, char *err, size_t errsz)
{
	char *diag = NULL;

	if (ld != NULL)
		ldap_get_option(ld, LDAP_OPT_DIAGNOSTIC_MESSAGE, &diag);
	if (diag != NULL && diag[0] != '\0')
		snprintf(err, errsz, "%s: %s (%s)", uri, ldap_err2string(rc), diag);
	else
		snprintf(err, errsz, "%s: %s", uri, ldap_err2string(rc));
	if (diag != NULL)
		ldap_memfree(diag);
}

static int conn_set_options(const struct ldap_conn_cfg *cfg, LDAP *ld)
{
	int v3 = LDAP_VERSION3, demand = LDAP_OPT_X_TLS_DEMAND, client = 0;
	struct timeval tv = { .tv_sec = (time_t)(cfg->timeout_ms / 1000),
			      .tv_usec = (suseconds_t)(cfg->timeout_ms % 1000) * 1000 };
	int rc = ldap_set_option(ld, LDAP_OPT_PROTOCOL_VERSION, &v3);

	if (rc == LDAP_OPT_SUCCESS)
		rc = ldap_set_option(ld, LDAP_OPT_REFERRALS, LDAP_OPT_OFF);
	if (rc == LDAP_OPT_SUCCESS)
		rc = ldap_set_option(ld, LDAP_OPT_RESTART, LDAP_OPT_ON);
	if (rc == LDAP_OPT_SUCCESS)
		rc = ldap_set_option(ld, LDAP_OPT_NETWORK_TIMEOUT, &tv);
	if (rc == LDAP_OPT_SUCCESS)
		rc = ldap_set_option(ld, LDAP_OPT_TIMEOUT, &tv);
	if (rc == LDAP_OPT_SUCCESS && cfg->tls_ca != NULL)
		rc = ldap_set_option(ld, LDAP_OPT_X_TLS_CACERTFILE, cfg->tls_ca);
	if (rc == LDAP_OPT_SUCCESS)
		rc = ldap_set_option(ld, LDAP_OPT_X_TLS_REQUIRE_CERT, &demand);
	if (rc == LDAP_OPT_SUCCESS) /* a context of our own, with the options above */
		rc = ldap_set_option(ld, LDAP_OPT_X_TLS_NEWCTX, &client);
	return rc == LDAP_OPT_SUCCESS ? LDAP_SUCCESS : LDAP_LOCAL_ERROR;
}

static int conn_bind(const struct ldap_conn_cfg *cfg, LDAP *ld)
{
	struct berval cred = { 0, NULL };

	if (cfg->password != NULL) {
		cred.bv_val = cfg->password;
		cred.bv_len = strlen(cfg->password);
	}
	/* anonymous binds too: libldap connects lazily, and this proves the server answers */
	return ldap_sasl_bind_s(ld, cfg->bind_dn != NULL ? cfg->bind_dn : "", LDAP_SASL_SIMPLE, &cred,
				NULL, NULL, NULL);
}

/* Open, secure and bind one URI. Returns an LDAP result code; *out set on success. */
static int conn_open_uri(const struct ldap_conn_cfg *cfg, const char *uri, LDAP **out, char *err,
			 size_t errsz)
{
	LDAP *ld = NULL;
	int rc = ldap_initialize(&ld, uri);

	if (rc != LDAP_SUCCESS) {
		conn_error(NULL, uri, rc, err, errsz);
		return rc;
	}
	rc = conn_set_options(cfg, ld);
	if (rc == LDAP_SUCCESS && cfg->starttls && strncasecmp(uri, "ldap://", 7) == 0)
		rc = ldap_start_tls_s(ld, NULL, NULL);
	if (rc == LDAP_SUCCESS)
		rc = conn_bind(cfg, ld);
	if (rc != LDAP_SUCCESS) {
		conn_error(ld, uri, rc, err, errsz);
		ldap_unbind_ext_s(ld, NULL, NULL);
		return rc;
	}
	*out = ld;
	return LDAP_SUCCESS;
}

/* Connect to the first URI that works. On failure err lists why each failed. */
static int conn_connect(struct ldap_conn *c, char *err, size_t errsz)
{
	const struct ldap_conn_cfg *cfg = c->cfg;
	int rc = LDAP_SERVER_DOWN;
	size_t used = 0;

	if (now_ms() < c->retry_at_ms) {
		snprintf(err, errsz, "%s", c->last_err);
		return LDAP_SERVER_DOWN;
	}
	err[0] = '\0';
	for (size_t i = 0; i < cfg->nuris; i++) {
		char one[512];
		rc = conn_open_uri(cfg, cfg->uris[i], &c->ld, one, sizeof(one));
		if (rc == LDAP_SUCCESS) {
			if (i > 0)
				log_notice("ldap %s: connected to %s (failover)", cfg->name, cfg->uris[i]);
			c->uri_index = i;
			return rc;
		}
		log_debug("ldap %s: %s", cfg->name, one);
		if (used < errsz)
			used += (size_t)snprintf(err + used, errsz - used, "%s%s", used ? "; " : "", one);
	}
	snprintf(c->last_err, sizeof(c->last_err), "%s", err);
	c->retry_at_ms = now_ms() + RECONNECT_BACKOFF_MS;
	return rc;
}

int ldap_conn_connect(struct ldap_conn *c, char *err, size_t errsz)
{
	return c->ld != NULL ? LDAP_SUCCESS : conn_connect(c, err, errsz);
}

/* The connection is gone (or unusable): drop it, it is re-opened on the next use. */
static bool rc_loses_connection(int rc)
{
	return rc == LDAP_SERVER_DOWN || rc == LDAP_CONNECT_ERROR || rc == LDAP_TIMEOUT ||
	       rc == LDAP_UNAVAILABLE || rc == LDAP_BUSY || rc == LDAP_LOCAL_ERROR;
}

int ldap_conn_search(struct ldap_conn *c, const char *filter, char **attrs, int sizelimit,
		     LDAPControl **sctrls, LDAPMessage **res, char *err, size_t errsz)
{
	struct timeval tv = { .tv_sec = (time_t)(c->cfg->timeout_ms / 1000),
			      .tv_usec = (suseconds_t)(c->cfg->timeout_ms % 1000) * 1000 };
	int rc = LDAP_SERVER_DOWN;

	*res = NULL;
	for (int attempt = 0; attempt < 2; attempt++) {
		bool fresh = c->ld == NULL;
		if (fresh && (rc = conn_connect(c, err, errsz)) != LDAP_SUCCESS)
			return rc;
		rc = ldap_search_ext_s(c->ld, c->cfg->base, LDAP_SCOPE_SUBTREE, filter, attrs, 0, sctrls,
				       NULL, &tv, sizelimit, res);
		if (rc == LDAP_SUCCESS)
			return rc;
		conn_error(c->ld, c->cfg->uris[c->uri_index], rc, err, errsz);
		if (!rc_loses_connection(rc))
			return rc;
		conn_drop(c);
		/* a reused connection may have been closed while idle: one retry on a fresh one */
		if (fresh || (rc != LDAP_SERVER_DOWN && rc != LDAP_CONNECT_ERROR))
			return rc;
		ldap_msgfree(*res);
		*res = NULL;
	}
	return rc;
}

/* ---- the pool of lookup threads ---- */

struct ldap_conn_pool {
	const struct ldap_conn_cfg *cfg;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct ldap_conn_job *head, **tail; /* FIFO */
	size_t queued;
	bool stopping;
	pthread_t *threads;
	size_t nthreads;
};

/* Next job, or NULL when stopping with an empty queue. *stopping tells the job to skip LDAP. */
static struct ldap_conn_job *pool_take(struct ldap_conn_pool *p, bool *stopping)
{
	struct ldap_conn_job *job;

	pthread_mutex_lock(&p->mu);
	while (p->head == NULL && !p->stopping)
		pthread_cond_wait(&p->cv, &p->mu);
	job = p->head;
	if (job != NULL) {
		p->head = job->next;
		if (p->head == NULL)
			p->tail = &p->head;
		job->next = NULL;
		p->queued--;
	}
	*stopping = p->stopping;
	pthread_mutex_unlock(&p->mu);
	return job;
}

static void *pool_thread(void *arg)
{
	struct ldap_conn_pool *p = arg;
	struct ldap_conn *c = ldap_conn_new(p->cfg);
	struct ldap_conn_job *job;
	bool stopping;

	while ((job = pool_take(p, &stopping)) != NULL)
		job->run(job, stopping ? NULL : c);
	ldap_conn_free(c);
	return NULL;
}

struct ldap_conn_pool *ldap_conn_pool_start(const struct ldap_conn_cfg *cfg, char *why, size_t whysz)
{
	struct ldap_conn_pool *p = xcalloc(1, sizeof(*p));
	size_t n = cfg->connections ? cfg->connections : 1;
	sigset_t all, old;

	p->cfg = cfg;
	p->tail = &p->head;
	pthread_mutex_init(&p->mu, NULL);
	pthread_cond_init(&p->cv, NULL);
	p->threads = xcalloc(n, sizeof(pthread_t));
	/* signals stay with the main thread */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	for (; p->nthreads < n; p->nthreads++) {
		int e = pthread_create(&p->threads[p->nthreads], NULL, pool_thread, p);
		if (e != 0) {
			snprintf(why, whysz, "ldap %s: cannot start a lookup thread: %s", cfg->name, strerror(e));
			break;
		}
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (p->nthreads < n) {
		ldap_conn_pool_stop(p);
		return NULL;
	}
	return p;
}

bool ldap_conn_pool_submit(struct ldap_conn_pool *p, struct ldap_conn_job *job)
{
	job->next = NULL;
	job->queued_ms = now_ms();
	pthread_mutex_lock(&p->mu);
	if (p->queued >= LDAP_CONN_QUEUE_MAX) {
		pthread_mutex_unlock(&p->mu);
		return false;
	}
	p->queued++;
	*p->tail = job;
	p->tail = &job->next;
	pthread_cond_signal(&p->cv);
	pthread_mutex_unlock(&p->mu);
	return true;
}

void ldap_conn_pool_stop(struct ldap_conn_pool *p)
{
	if (p == NULL)
		return;
	pthread_mutex_lock(&p->mu);
	p->stopping = true;
	pthread_cond_broadcast(&p->cv);
	pthread_mutex_unlock(&p->mu);
	for (size_t i = 0; i < p->nthreads; i++)
		pthread_join(p->threads[i], NULL);
	pthread_cond_destroy(&p->cv);
	pthread_mutex_destroy(&p->mu);
	free(p->threads);
	free(p);
}
