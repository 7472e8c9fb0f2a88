/* redis_target.c - a Redis store's target from the cache key (redis_target.h): the spec's
 * syntax, the hosts resolved, the password read, the TLS context made; and the key namespace. */
#include "redis_target.h"

#include <stdlib.h>
#include <string.h>

#include "util.h"

struct redis_spec {
	char hosts[512];   /* "h:p" or "h:p,h:p" */
	char master[128];
	unsigned db;
};

/* arg: "//HOST[:PORT][/DB]" or, for Sentinel, "//HOST:PORT,HOST:PORT/MASTER[/DB]". */
static int redis_spec_parse(enum redis_kind kind, const char *arg, struct redis_spec *sp, const char **why)
{
	memset(sp, 0, sizeof *sp);
	*why = kind == REDIS_KIND_SENTINEL ? "expected redis+sentinel://HOST:PORT,HOST:PORT/MASTERNAME/DB"
					   : "expected redis://HOST:PORT/DB or rediss://HOST:PORT/DB";
	if (strncmp(arg, "//", 2) != 0)
		return -1;
	arg += 2;
	size_t hlen = strcspn(arg, "/");
	if (hlen == 0 || hlen >= sizeof sp->hosts || strpbrk(arg, " \t@?#") != NULL)
		return -1;
	memcpy(sp->hosts, arg, hlen);
	if (kind != REDIS_KIND_SENTINEL && strchr(sp->hosts, ',') != NULL)
		return -1;
	const char *rest = arg + hlen;
	if (kind == REDIS_KIND_SENTINEL) {
		if (*rest != '/')
			return -1;
		size_t mlen = strcspn(rest + 1, "/");
		if (mlen == 0 || mlen >= sizeof sp->master)
			return -1;
		memcpy(sp->master, rest + 1, mlen);
		rest += 1 + mlen;
	}
	if (*rest == '/' && rest[1] != '\0') {
		char *end;
		unsigned long db = strtoul(rest + 1, &end, 10);
		if (*end != '\0' || db > 10000 || rest[1] < '0' || rest[1] > '9')
			return -1;
		sp->db = (unsigned)db;
	} else if (*rest != '\0' && strcmp(rest, "/") != 0) {
		return -1;
	}
	return 0;
}

int redis_target_check(enum redis_kind kind, const char *arg, const char **why)
{
	struct redis_spec sp;
	return redis_spec_parse(kind, arg, &sp, why);
}

static SSL_CTX *redis_ssl_ctx(const char *ca, char *why, size_t whysz)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	if (ctx == NULL)
		return NULL;
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	if ((ca ? SSL_CTX_load_verify_locations(ctx, ca, NULL) : SSL_CTX_set_default_verify_paths(ctx)) != 1) {
		snprintf(why, whysz, "cannot load the CA certificates %s", ca ? ca : "of the system");
		SSL_CTX_free(ctx);
		return NULL;
	}
	return ctx;
}

static int redis_read_password(const char *path, char **out, char *why, size_t whysz)
{
	char buf[512];
	FILE *f = fopen(path, "r");

	if (f == NULL || fgets(buf, sizeof buf, f) == NULL) {
		snprintf(why, whysz, "cannot read the password file %s", path);
		if (f)
			fclose(f);
		return -1;
	}
	fclose(f);
	buf[strcspn(buf, "\r\n")] = '\0';
	*out = xstrdup(buf);
	return 0;
}

int redis_target_make(struct redis_target *t, enum redis_kind kind, const char *arg, const char *name,
		      const struct bs_config *cfg, char *why, size_t whysz)
{
	struct redis_spec sp;
	const char *perr;
	char err[200];

	memset(t, 0, sizeof *t);
	if (redis_spec_parse(kind, arg, &sp, &perr) != 0) {
		snprintf(why, whysz, "cache %s: %s", name, perr);
		return -1;
	}
	t->tls = kind == REDIS_KIND_TLS;
	t->db = sp.db;
	t->timeout_ms = cfg && cfg->cache_redis_timeout_ms ? cfg->cache_redis_timeout_ms : 500;
	snprintf(t->master, sizeof t->master, "%s", sp.master);
	for (const char *p = sp.hosts; *p; ) {
		size_t len = strcspn(p, ",");
		if (t->nhosts == REDIS_HOST_MAX ||
		    redis_endpoint_resolve(p, len, kind == REDIS_KIND_SENTINEL ? "26379" : "6379", &t->hosts[t->nhosts++],
					   err, sizeof err) != 0) {
			snprintf(why, whysz, "cache %s: %s", name, t->nhosts == REDIS_HOST_MAX ? "too many hosts" : err);
			return -1;
		}
		p += len + (p[len] == ',');
	}
	if (cfg && cfg->cache_redis_password_file &&
	    redis_read_password(cfg->cache_redis_password_file, &t->password, err, sizeof err) != 0) {
		snprintf(why, whysz, "cache %s: %s", name, err);
		return -1;
	}
	if (t->tls && (t->ssl_ctx = redis_ssl_ctx(cfg ? cfg->cache_redis_tls_ca : NULL, err, sizeof err)) == NULL) {
		snprintf(why, whysz, "cache %s: %s", name, err);
		return -1;
	}
	return 0;
}

bool redis_target_kind(const char *cache, enum redis_kind *kind, const char **arg)
{
	static const struct { const char *scheme; enum redis_kind kind; } schemes[] = {
		{ "redis:", REDIS_KIND_PLAIN }, { "rediss:", REDIS_KIND_TLS }, { "redis+sentinel:", REDIS_KIND_SENTINEL },
	};

	for (size_t i = 0; cache && i < sizeof schemes / sizeof schemes[0]; i++) {
		size_t n = strlen(schemes[i].scheme);
		if (strncmp(cache, schemes[i].scheme, n) == 0) {
			*kind = schemes[i].kind;
			*arg = cache + n;
			return true;
		}
	}
	return false;
}

void redis_target_clear(struct redis_target *t)
{
	if (t->ssl_ctx)
		SSL_CTX_free(t->ssl_ctx);
	free(t->password);
	t->ssl_ctx = NULL;
	t->password = NULL;
}

void redis_key_prefix(const struct bs_config *cfg, char *buf, size_t len)
{
	const char *p = cfg && cfg->cache_redis_prefix ? cfg->cache_redis_prefix : "";
	snprintf(buf, len, "backstop:%s%s", p, p[0] ? ":" : "");
}
