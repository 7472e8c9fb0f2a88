/* config_audit.c - what `check-config` checks beyond the file itself, against the machine it runs
 * on: the `user` exists, the `cache` directory can be used, `deliver` and callout hosts resolve
 * (c-ares, each query bounded), secret files are not readable by everyone, LDAP simple binds
 * do not cross the network in clear, and timeouts that defeat each other. For the command line
 * only: never run by the daemon. */
#include "config_audit.h"

#include <errno.h>
#include <limits.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <event2/event.h>

#include "config_value.h"
#include "dns.h"
#include "rcpt.h"
#include "vcache.h"
#include "util.h"

#define AUDIT_DNS_TIMEOUT_MS 1000 /* per try; two tries per server */
#define AUDIT_DNS_DEADLINE_S 5    /* all names together, whatever resolv.conf lists */

struct audit {
	const struct bs_config *cfg;
	FILE *out;
	int errors;
	unsigned warnings;
};

struct audit_name {
	struct audit *a;
	const struct bs_domain *d;
	char what[16];                 /* "deliver", "callout" */
	struct bs_hostport hp;
	struct dns_query *q;           /* NULL once answered */
	size_t *pending;
	struct event_base *base;
};

static void audit_say(struct audit *a, unsigned line, bool warning, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

/* One line "FILE:LINE: [warning: ]message" on out. */
static void audit_say(struct audit *a, unsigned line, bool warning, const char *fmt, ...)
{
	va_list ap;

	fprintf(a->out, "%s:%u: %s", a->cfg->path, line, warning ? "warning: " : "");
	va_start(ap, fmt);
	vfprintf(a->out, fmt, ap);
	va_end(ap);
	fputc('\n', a->out);
	if (warning)
		a->warnings++;
	else
		a->errors++;
}

static void audit_user(struct audit *a)
{
	const char *user = a->cfg->user;

	errno = 0;
	if (user == NULL || getpwnam(user) != NULL)
		return;
	/* getpwnam(3): these mean "not found" too, depending on the NSS module */
	bool lookup_failed = errno != 0 && errno != ENOENT && errno != ESRCH && errno != EBADF && errno != EPERM;
	audit_say(a, config_gateway_line(a->cfg, "user"), false,
		  "user = %s: %s%s (started as root, backstop would not start)", user,
		  lookup_failed ? "cannot look it up: " : "no such user", lookup_failed ? strerror(errno) : "");
}

static bool audit_verifies(const struct bs_config *cfg)
{
	for (size_t i = 0; i < cfg->ndomains; i++)
		if (cfg->domains[i].verify.n > 0)
			return true;
	return false;
}

/* lmdb:DIR: DIR is a directory backstop can write, or can be created (its nearest existing
 * ancestor is a writable directory). Nothing is created here. */
static void audit_cache(struct audit *a)
{
	const char *spec = a->cfg->cache, *arg;
	unsigned line = config_gateway_line(a->cfg, "cache");
	char dir[PATH_MAX];
	struct stat st;

	if (spec == NULL || vcache_type_find(spec, &arg) != &vcache_lmdb_type || !audit_verifies(a->cfg))
		return; /* memory: needs nothing; without verify the daemon opens no cache */
	if (strbuf_copy(dir, sizeof dir, arg, strlen(arg)) != 0)
		return;
	if (stat(dir, &st) == 0) {
		if (!S_ISDIR(st.st_mode))
			audit_say(a, line, false, "cache = %s: %s is not a directory", spec, dir);
		else if (access(dir, W_OK | X_OK) != 0)
			audit_say(a, line, false, "cache = %s: directory not writable: %s", spec,
				  strerror(errno));
		return;
	}
	int rc;
	do { /* up to the nearest ancestor that exists */
		char *slash = strrchr(dir, '/');
		if (slash == NULL || slash == dir)
			strcpy(dir, "/");
		else
			*slash = '\0';
		rc = stat(dir, &st);
	} while (rc != 0 && (errno == ENOENT || errno == ENOTDIR) && strcmp(dir, "/") != 0);
	if (rc != 0)
		audit_say(a, line, false, "cache = %s: cannot look at %s: %s", spec, dir, strerror(errno));
	else if (!S_ISDIR(st.st_mode) || access(dir, W_OK | X_OK) != 0)
		audit_say(a, line, false, "cache = %s: the directory cannot be created (%s is %s)", spec,
			  dir, S_ISDIR(st.st_mode) ? "not writable" : "not a directory");
}

/* A secret (private key, password file) readable by every local user. */
static void audit_secret(struct audit *a, unsigned line, const char *key, const char *path)
{
	struct stat st;

	if (path != NULL && stat(path, &st) == 0 && (st.st_mode & S_IROTH))
		audit_say(a, line, true, "%s %s is readable by everyone (chmod o-r %s)", key, path, path);
}

static void audit_ldap(struct audit *a)
{
	for (size_t i = 0; i < a->cfg->nldaps; i++) {
		const struct bs_ldap *l = &a->cfg->ldaps[i];
		audit_secret(a, l->line, "bind_password_file", l->bind_password_file);
		for (size_t j = 0; l->bind_dn != NULL && !l->starttls && j < l->uri.n; j++)
			if (strncasecmp(l->uri.items[j], "ldap://", 7) == 0)
				audit_say(a, l->line, true,
					  "[ldap %s] uri %s: a simple bind without starttls = yes sends the "
					  "bind password in clear (use ldaps:// or starttls = yes)",
					  l->name, l->uri.items[j]);
	}
}

/* The stage deadline (decision_timeout) must leave verification its own budget (verify_timeout):
 * otherwise a slow source is answered by the deadline's 451 4.4.3 first, and a domain's
 * on_unavailable = accept never applies. */
static void audit_timeouts(struct audit *a)
{
	const struct bs_config *cfg = a->cfg;
	char decision[32], verify[32];

	if (cfg->decision_timeout_ms > cfg->verify_timeout_ms || !audit_verifies(cfg))
		return;
	unsigned line = config_gateway_line(cfg, "decision_timeout");
	if (line == 0)
		line = config_gateway_line(cfg, "verify_timeout");
	cfgval_format_duration(cfg->decision_timeout_ms, decision, sizeof decision);
	cfgval_format_duration(cfg->verify_timeout_ms, verify, sizeof verify);
	audit_say(a, line, true,
		  "decision_timeout = %s is not above verify_timeout = %s: a recipient whose verification "
		  "runs out of time gets the stage deadline's 451 4.4.3 first, and on_unavailable = accept "
		  "never applies (make decision_timeout longer than verify_timeout)",
		  decision, verify);
}

static void audit_resolved_cb(void *arg, const struct dns_addrs *res)
{
	struct audit_name *n = arg;

	n->q = NULL;
	if (res->status != DNS_OK)
		audit_say(n->a, n->d->line, true, "[domain %s] %s host %s does not resolve (%s)%s",
			  n->d->name, n->what, n->hp.host, res->error ? res->error : "no address",
			  res->status == DNS_TEMPFAIL ? " for now" : "");
	if (--*n->pending == 0)
		event_base_loopbreak(n->base);
}

static void audit_add_names(struct audit_name **names, size_t *n, const struct bs_domain *d,
			      const char *what, const struct bs_hostport_list *l)
{
	for (size_t i = 0; i < l->n; i++) {
		*names = xrealloc(*names, (*n + 1) * sizeof **names);
		struct audit_name *x = &(*names)[(*n)++];
		memset(x, 0, sizeof *x);
		x->d = d;
		snprintf(x->what, sizeof x->what, "%s", what);
		x->hp = l->items[i];
	}
}

/* Every deliver and callout host, resolved in parallel the way the daemon resolves them. */
static void audit_names(struct audit *a)
{
	struct audit_name *names = NULL;
	size_t n = 0, pending = 0;

	for (size_t i = 0; i < a->cfg->ndomains; i++) {
		const struct bs_domain *d = &a->cfg->domains[i];
		audit_add_names(&names, &n, d, "deliver", &d->deliver);
		for (size_t j = 0; j < d->verify.n; j++) {
			struct bs_hostport_list l = { NULL, 0 };
			const char *why, *arg;
			if (rcpt_type_find(d->verify.items[j], &arg) == &rcpt_callout_type &&
			    cfgval_hostport_list(arg, &l, &why) == 0)
				audit_add_names(&names, &n, d, "callout", &l);
			cfgval_hostport_list_free(&l);
		}
	}
	struct event_base *base = n ? event_base_new() : NULL;
	const char *why = NULL;
	struct dns_resolver *r = base ? dns_resolver_new_opts(base, AUDIT_DNS_TIMEOUT_MS, 2, &why) : NULL;
	if (r != NULL && dns_resolver_set_servers(r, a->cfg->dns_servers) < 0) {
		audit_say(a, config_gateway_line(a->cfg, "dns_servers"), true, "dns_servers: not usable");
		dns_resolver_free(r);
		r = NULL;
		why = "dns_servers not usable";
	}
	if (n > 0 && r == NULL) {
		audit_say(a, 0, true, "host names not checked: %s", why ? why : "no resolver");
	} else if (n > 0) {
		struct timeval deadline = { AUDIT_DNS_DEADLINE_S, 0 };
		for (size_t i = 0; i < n; i++) {
			names[i].a = a;
			names[i].pending = &pending;
			names[i].base = base;
			pending++;
			names[i].q = dns_resolve_host(r, names[i].hp.host, (uint16_t)atoi(names[i].hp.port),
						      AF_UNSPEC, audit_resolved_cb, &names[i]);
		}
		event_base_loopexit(base, &deadline);
		event_base_dispatch(base);
		for (size_t i = 0; i < n; i++)
			if (names[i].q != NULL)
				audit_say(a, names[i].d->line, true, "[domain %s] %s host %s: no DNS answer in time",
					  names[i].d->name, names[i].what, names[i].hp.host);
	}
	if (r)
		dns_resolver_free(r);
	if (base)
		event_base_free(base);
	free(names);
}

int config_audit(const struct bs_config *cfg, FILE *out, unsigned *warnings)
{
	struct audit a = { .cfg = cfg, .out = out };

	audit_user(&a);
	audit_cache(&a);
	audit_secret(&a, config_gateway_line(cfg, "tls_key"), "tls_key", cfg->tls_key);
	audit_ldap(&a);
	audit_timeouts(&a);
	audit_names(&a);
	*warnings = a.warnings;
	return a.errors;
}
