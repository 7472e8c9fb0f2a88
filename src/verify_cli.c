/* verify_cli.c - the admin's view of recipient verification:
 *   backstop verify -c FILE [--no-cache] [--store] ADDR...   ask the chain (and read the cache) as
 *       the gateway would; the verdict is written to the cache only with --store
 *   backstop cache -c FILE [-s SOCKET] stats | show ADDR | purge ADDR|@DOMAIN | flush: asks the
 *       running daemon through its control socket; when it cannot be reached, acts on the store
 *       itself (saying so), unless the store is the daemon's memory
 * verify exits 0 when every address is valid, 2 when any is unavailable, else 1 when any is
 * invalid (or not in one of our domains); 3 on a usage or configuration error. */
#include "verify_cli.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache_ops.h"
#include "control.h"
#include "control_cli.h"
#include "log.h"
#include "util.h"
#include "verify.h"

#define CLI_USAGE_ERROR 3

#define VERIFY_USAGE "usage: backstop verify [-c FILE] [--no-cache] [--store] ADDRESS...\n" \
	"  -c, --config FILE  the configuration (default " CONFIG_DEFAULT_PATH ")\n" \
	"  --no-cache         do not read the verdict cache: ask the sources\n" \
	"  --store            write the verdicts to the daemon's cache (not done without it)\n" \
	"exit status: 0 all valid, 1 any invalid, 2 any unavailable, 3 usage or configuration error\n"

struct cli_opts {
	const char *conf;
	const char *socket; /* cache: --socket */
	bool no_cache, store;
};

/* -c FILE, --no-cache and --store (verify only), --socket (cache only); returns the index of the first operand, or -1.
 * main.c answers --help from its command table. */
static int cli_options(int argc, char **argv, struct cli_opts *o, bool verify)
{
	static const struct option longopts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "no-cache", no_argument, NULL, 'n' },
		{ "store", no_argument, NULL, 'S' },
		{ "socket", required_argument, NULL, 's' },
		{ NULL, 0, NULL, 0 },
	};
	int ch;

	*o = (struct cli_opts){ .conf = CONFIG_DEFAULT_PATH };
	optind = 1;
	while ((ch = getopt_long(argc, argv, verify ? "c:" : "c:s:", longopts, NULL)) != -1) {
		if (ch == 'c')
			o->conf = optarg;
		else if (ch == 'n' && verify)
			o->no_cache = true;
		else if (ch == 'S' && verify)
			o->store = true;
		else if (ch == 's' && !verify)
			o->socket = optarg;
		else
			return -1;
	}
	return optind;
}

static struct bs_config *cli_config(const char *path)
{
	struct config_errors errs = { 0 };
	struct bs_config *cfg = config_load(path, &errs);

	for (size_t i = 0; i < errs.n; i++)
		fprintf(stderr, "%s\n", errs.msgs[i]);
	config_errors_free(&errs);
	return cfg;
}

struct cli_wait { bool done; struct verify_result r; };

static void cli_on_result(void *arg, const struct verify_result *r)
{
	struct cli_wait *w = arg;
	w->done = true;
	w->r = *r;
}

static void cli_print(const char *addr, const struct verify_result *r)
{
	printf("%s: %s source=%s cached=%s", addr, rcpt_verdict_name(r->verdict), r->source, r->cached ? "yes" : "no");
	if (r->cached)
		printf(" age=%llus ttl_left=%llus", (unsigned long long)(r->age_ms / 1000),
		       (unsigned long long)(r->ttl_left_ms / 1000));
	printf(" latency=%llums reply=\"%d %s %s\" reason=\"%s\"\n", (unsigned long long)r->latency_ms, r->code,
	       r->enhanced, r->text, r->reason);
}

/* Verify one address; returns its exit-code contribution (0, 1 or 2). */
static int cli_verify_one(const struct bs_config *cfg, struct verifier *v, struct event_base *base,
			  const char *text, unsigned flags)
{
	struct smtp_address a;
	bool parsed = cache_ops_address(text, &a) == 0;
	const struct bs_domain *dom = parsed ? config_find_domain(cfg, a.domain) : NULL;

	if (dom == NULL) {
		printf("%s: invalid reason=\"%s\"\n", text, parsed ? "not one of our domains" : "not an address");
		return 1;
	}
	struct cli_wait w = { 0 };
	verify_start_flags(v, base, dom, &a, flags, cli_on_result, &w);
	while (!w.done)
		event_base_loop(base, EVLOOP_ONCE);
	cli_print(text, &w.r);
	return w.r.verdict == RCPT_VALID ? 0 : w.r.verdict == RCPT_INVALID ? 1 : 2;
}

static struct vcache *cli_cache(const struct bs_config *cfg)
{
	char why[512] = "";
	struct vcache *c = vcache_open(cfg->cache, cfg, why, sizeof why);

	if (c == NULL)
		fprintf(stderr, "backstop: %s\n", why);
	return c;
}

int verify_cli_main(int argc, char **argv)
{
	struct cli_opts o;
	int first = cli_options(argc, argv, &o, true);

	if (first < 0 || first >= argc) {
		fputs(VERIFY_USAGE, stderr);
		return CLI_USAGE_ERROR;
	}
	struct bs_config *cfg = cli_config(o.conf);
	if (cfg == NULL)
		return CLI_USAGE_ERROR;
	log_open(false, LOG_LVL_WARN);
	struct rcpt_registry *reg = rcpt_registry_open(cfg);
	struct vcache *cache = o.no_cache && !o.store ? NULL : cli_cache(cfg);
	unsigned flags = (o.no_cache ? 0 : VERIFY_CACHE_READ) | (o.store ? VERIFY_CACHE_WRITE : 0);
	struct verifier *v = verifier_new(cfg, reg, cache);
	struct event_base *base = event_base_new();
	int worst_invalid = 0, any_unavailable = 0;
	for (int i = first; i < argc; i++) {
		int rc = cli_verify_one(cfg, v, base, argv[i], flags);
		worst_invalid |= rc == 1;
		any_unavailable |= rc == 2;
	}
	event_base_dispatch(base); /* what is still pending on the loop runs (cache fills) */
	verifier_shutdown_base(v, base);
	/* sources with threads of their own (ldap:, callout:) may still post answers to base:
	 * stop them before base goes away */
	rcpt_registry_close(reg);
	verifier_free(v);
	vcache_forget_base(cache, base);
	event_base_free(base);
	vcache_close(cache);
	config_unref(cfg);
	return any_unavailable ? 2 : worst_invalid ? 1 : 0;
}

static void cli_on_show(void *arg, int found, const struct vcache_entry *e)
{
	cache_ops_print_entry(stdout, arg, found, e);
}

/* The command on the store itself (the daemon was not reachable). */
static int cli_cache_op(struct vcache *c, const struct bs_config *cfg, const char *op, const char *arg)
{
	char key[CACHE_OPS_KEY_MAX];
	const char *delims;
	int rc = cache_ops_parse(cfg, op, arg, stderr, key, sizeof key, &delims);

	if (rc != CACHE_OPS_OK)
		return rc;
	if (strcmp(op, "stats") == 0)
		return cache_ops_stats(c, stdout);
	if (strcmp(op, "flush") == 0)
		return cache_ops_flush(c, stdout);
	if (strcmp(op, "purge") == 0)
		return cache_ops_purge(c, key, delims, stdout);
	struct event_base *base = event_base_new();
	vcache_get(c, base, key, cli_on_show, key);
	event_base_dispatch(base); /* for a store that answers later */
	vcache_forget_base(c, base);
	event_base_free(base);
	return CACHE_OPS_OK;
}

/* Ask the daemon first: its cache is the one that answers clients (memory layer included).
 * Returns its status, or -1 when it cannot be reached (why says so). */
static int cli_cache_daemon(const char *sock, int argc, char **argv, int first, char *why, size_t whysz)
{
	char req[CONTROL_LINE_MAX] = "cache";

	for (int i = first; i < argc; i++) {
		if (strlen(req) + strlen(argv[i]) + 2 > sizeof req || strpbrk(argv[i], " \t\r\n")) {
			snprintf(why, whysz, "argument not sendable: %s", argv[i]);
			return -1;
		}
		strbuf_append(req, sizeof req, " ");
		strbuf_append(req, sizeof req, argv[i]);
	}
	return control_cli_request(sock, req, 60, stdout, stderr, why, whysz);
}

int cache_cli_main(int argc, char **argv)
{
	struct cli_opts o;
	int first = cli_options(argc, argv, &o, false);
	char sock[BS_UNIX_PATH_MAX + 1], why[512];

	if (first < 0 || first >= argc || argc - first > 2) {
		fprintf(stderr, "usage: backstop cache [-c FILE] [-s SOCKET] stats | show ADDR | purge ADDR|@DOMAIN | flush\n");
		return CLI_USAGE_ERROR;
	}
	control_cli_socket(o.conf, o.socket, sock, sizeof sock);
	int rc = cli_cache_daemon(sock, argc, argv, first, why, sizeof why);
	if (rc >= 0)
		return rc;
	struct bs_config *cfg = cli_config(o.conf);
	if (cfg == NULL)
		return CLI_USAGE_ERROR;
	log_open(false, LOG_LVL_WARN);
	if (vcache_type_find(cfg->cache ? cfg->cache : VCACHE_DEFAULT, &(const char *){ NULL }) == &vcache_memory_type) {
		fprintf(stderr, "backstop cache: the daemon cannot be reached (%s); its cache %s lives in its memory: "
			"nothing to act on\n", why, cfg->cache);
		config_unref(cfg);
		return CONTROL_UNREACHABLE;
	}
	fprintf(stderr, "backstop cache: the daemon cannot be reached (%s); acting on the store %s directly%s\n", why,
		cfg->cache ? cfg->cache : VCACHE_DEFAULT,
		strcmp(argv[first], "stats") == 0 ? " (hits and misses are this command's own)" : "");
	struct vcache *c = cli_cache(cfg);
	rc = c ? cli_cache_op(c, cfg, argv[first], first + 1 < argc ? argv[first + 1] : NULL) : 1;
	vcache_close(c);
	config_unref(cfg);
	return rc;
}
