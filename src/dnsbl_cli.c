/* dnsbl_cli.c - `backstop blcheck`: every address (the command line's, else blcheck_addresses)
 * asked of every list of blcheck_sites (else the built-in list) at once, through the same DNS
 * path as the gateway (dnsbl_lookup.c, dns_servers); prints per list whether the address is
 * listed, the reply address, the TXT reason and where to ask for removal when known; with
 * --metrics-file, the same per list as Prometheus gauges for node_exporter's textfile collector
 * (backstop_blocklist_listed{zone}: what the alert rules in contrib/prometheus watch). */
#include "dnsbl_cli.h"

#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "cidr.h"
#include "config.h"
#include "dns.h"
#include "dnsbl_lookup.h"
#include "dnsbl_sites.h"
#include "log.h"
#include "util.h"

#define EXIT_CLEAN 0
#define EXIT_LISTED 1
#define EXIT_FAILED 2
#define EXIT_USAGE 3

/* The major public lists (backstop(8), BLCHECK). A filter keeps a list's informational answers
 * (Spamhaus PBL is 127.0.0.10-11: kept, it matters for a sending host) from reading as errors. */
const char dnsbl_cli_default_sites[] =
	"zen.spamhaus.org=127.0.0.[2..11], bl.spamcop.net=127.0.0.2, b.barracudacentral.org=127.0.0.2, "
	"ips.backscatterer.org=127.0.0.2, psbl.surriel.com=127.0.0.2, bl.mailspike.net=127.0.0.2, "
	"dnsbl-1.uceprotect.net=127.0.0.2, dnsbl.dronebl.org, ix.dnsbl.manitu.net=127.0.0.2, "
	"truncate.gbudb.net=127.0.0.2, all.s5h.net=127.0.0.2, bl.blocklist.de, db.wpbl.info=127.0.0.2";

static const struct { const char *domain, *url; } removal[] = {
	{ "zen.spamhaus.org", "https://check.spamhaus.org/" },
	{ "sbl.spamhaus.org", "https://check.spamhaus.org/" },
	{ "xbl.spamhaus.org", "https://check.spamhaus.org/" },
	{ "pbl.spamhaus.org", "https://check.spamhaus.org/" },
	{ "bl.spamcop.net", "https://www.spamcop.net/bl.shtml" },
	{ "b.barracudacentral.org", "https://www.barracudacentral.org/rbl/removal-request" },
	{ "ips.backscatterer.org", "https://www.backscatterer.org/?target=test" },
	{ "psbl.surriel.com", "https://psbl.org/" },
	{ "bl.mailspike.net", "https://mailspike.org/iplookup.html" },
	{ "dnsbl-1.uceprotect.net", "https://www.uceprotect.net/en/rblcheck.php" },
	{ "dnsbl.dronebl.org", "https://dronebl.org/lookup" },
	{ "ix.dnsbl.manitu.net", "https://www.dnsbl.manitu.net/" },
	{ "bl.blocklist.de", "https://www.blocklist.de/en/delist.html" },
};

#define BLCHECK_USAGE "usage: backstop blcheck [-c FILE] [-m|--metrics-file FILE] [IP ...]\n"

struct blcheck {
	struct event_base *base;
	const struct dnsbl_sites *sites;
	size_t pending;
	int listed, failed;      /* addresses listed somewhere; lookups failed */
	unsigned *zone_listed;   /* per list (distinct domain): addresses it lists */
	unsigned *zone_failed;   /* per list: lookups that failed */
};

struct blcheck_addr {
	struct blcheck *b;
	const char *ip;
	char *out;               /* what to print, made in the callback */
	size_t outlen;
};

static const char *removal_url(const char *domain)
{
	for (size_t i = 0; i < ARRAY_SIZE(removal); i++)
		if (strcmp(removal[i].domain, domain) == 0)
			return removal[i].url;
	return NULL;
}

static int list_sign(const struct dnsbl_sites *sites, size_t i)
{
	for (size_t e = 0; e < sites->n; e++)
		if (sites->items[e].domain_index == i && sites->items[e].weight < 0)
			return -1;
	return 1;
}

static void print_list(FILE *f, struct blcheck *b, const char *ip, size_t i, const struct dnsbl_list_result *lr,
		       int *listed, int *failed)
{
	const char *url = removal_url(lr->domain);
	bool allow = list_sign(b->sites, i) < 0;

	fprintf(f, "%s %-28s ", ip, lr->domain);
	switch (lr->state) {
	case DNSBL_LISTED:
		if (!lr->matched) {
			fprintf(f, "not listed (answered %u.%u.%u.%u, outside the list's filter)\n", lr->addrs[0][0],
				lr->addrs[0][1], lr->addrs[0][2], lr->addrs[0][3]);
			return;
		}
		fprintf(f, "%s %u.%u.%u.%u", allow ? "LISTED (allowlist)" : "LISTED", lr->addrs[0][0],
			lr->addrs[0][1], lr->addrs[0][2], lr->addrs[0][3]);
		if (lr->txt[0]) {
			char txt[DNSBL_TXT_MAX * 4];
			log_sanitize(txt, sizeof txt, lr->txt, strlen(lr->txt));
			fprintf(f, " \"%s\"", txt);
		}
		if (url && !allow)
			fprintf(f, " removal: %s", url);
		fputc('\n', f);
		*listed += !allow;
		return;
	case DNSBL_NOT_LISTED:
		fprintf(f, "not listed\n");
		return;
	case DNSBL_REFUSED:
		fprintf(f, "ERROR: %s (answered 127.255.255.%u)\n", lr->error, lr->addrs[0][3]);
		break;
	default:
		fprintf(f, "ERROR: %s\n", lr->error ? lr->error : "lookup failed");
		break;
	}
	(*failed)++;
}

static void addr_done(void *arg, const struct dnsbl_result *res)
{
	struct blcheck_addr *a = arg;
	struct blcheck *b = a->b;
	FILE *f = open_memstream(&a->out, &a->outlen);
	int listed = 0, failed = 0;

	if (f == NULL) {
		b->failed++;
	} else {
		for (size_t i = 0; i < res->nlists; i++) {
			int l0 = listed, f0 = failed;
			print_list(f, b, a->ip, i, &res->lists[i], &listed, &failed);
			if (i < b->sites->ndomains) {
				b->zone_listed[i] += (unsigned)(listed - l0);
				b->zone_failed[i] += (unsigned)(failed - f0);
			}
		}
		fprintf(f, "%s: %s on %d of %zu lists", a->ip, listed ? "LISTED" : "listed", listed, res->nlists);
		if (failed)
			fprintf(f, ", %d lookups failed", failed);
		fputc('\n', f);
		fclose(f);
	}
	b->listed += listed > 0;
	b->failed += failed;
	if (--b->pending == 0)
		event_base_loopbreak(b->base);
}

/* The configuration: -c FILE must load; the default file is used when it exists. *cfg stays
 * NULL (built-in defaults) when there is none. 0, or -1 with the errors printed. */
static int blcheck_config(const char *path, bool given, struct bs_config **cfg)
{
	struct config_errors errs = { 0 };
	struct stat st;

	*cfg = NULL;
	if (!given && stat(path, &st) < 0 && errno == ENOENT)
		return 0;
	*cfg = config_load(path, &errs);
	for (size_t i = 0; i < errs.n; i++)
		fprintf(stderr, "%s\n", errs.msgs[i]);
	config_errors_free(&errs);
	return *cfg ? 0 : -1;
}

/* Every address operand, else blcheck_addresses, as one list of addresses. */
static int blcheck_addrs(int argc, char **argv, const struct bs_config *cfg, struct cidr_list *out)
{
	const char *why = NULL;

	if (argc == 0) {
		const char *conf = cfg ? cfg->blcheck_addresses : NULL;
		if (conf == NULL || cidr_list_parse(conf, out, &why) < 0 || out->n == 0) {
			fprintf(stderr, "backstop blcheck: no address given and no blcheck_addresses in the configuration\n");
			return -1;
		}
		return 0;
	}
	out->items = xcalloc((size_t)argc, sizeof *out->items);
	out->n = 0;
	for (int i = 0; i < argc; i++) {
		struct cidr *c = &out->items[out->n];
		if (inet_pton(AF_INET, argv[i], c->addr) == 1)
			c->family = AF_INET;
		else if (inet_pton(AF_INET6, argv[i], c->addr) == 1)
			c->family = AF_INET6;
		else {
			fprintf(stderr, "backstop blcheck: not an IP address: %s\n", argv[i]);
			cidr_list_free(out);
			return -1;
		}
		c->bits = c->family == AF_INET ? 32 : 128;
		out->n++;
	}
	return 0;
}

/* The per-list figures in the Prometheus text format, written to path.tmp and renamed over path
 * (the textfile collector never reads half a file). 0, or -1 with the reason printed. */
static int blcheck_write_metrics(const struct blcheck *b, size_t naddrs, const char *path)
{
	char tmp[4096];
	if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp) {
		fprintf(stderr, "backstop blcheck: %s: name too long\n", path);
		return -1;
	}
	FILE *f = fopen(tmp, "w");
	if (f == NULL) {
		fprintf(stderr, "backstop blcheck: %s: %s\n", tmp, strerror(errno));
		return -1;
	}
	fputs("# HELP backstop_blocklist_listed How many of the checked addresses the list lists (backstop blcheck; "
	      "allowlists count 0).\n# TYPE backstop_blocklist_listed gauge\n", f);
	for (size_t i = 0; i < b->sites->ndomains; i++)
		fprintf(f, "backstop_blocklist_listed{zone=\"%s\"} %u\n", dnsbl_sites_domain(b->sites, i)->domain,
			b->zone_listed[i]);
	fputs("# HELP backstop_blocklist_lookup_errors Lookups of the checked addresses the list did not answer "
	      "(timeout, failure, refusal of the resolver).\n# TYPE backstop_blocklist_lookup_errors gauge\n", f);
	for (size_t i = 0; i < b->sites->ndomains; i++)
		fprintf(f, "backstop_blocklist_lookup_errors{zone=\"%s\"} %u\n", dnsbl_sites_domain(b->sites, i)->domain,
			b->zone_failed[i]);
	fprintf(f, "# HELP backstop_blocklist_checked_addresses Addresses the last backstop blcheck checked.\n"
		   "# TYPE backstop_blocklist_checked_addresses gauge\nbackstop_blocklist_checked_addresses %zu\n"
		   "# HELP backstop_blocklist_last_check_timestamp_seconds When the last backstop blcheck ran.\n"
		   "# TYPE backstop_blocklist_last_check_timestamp_seconds gauge\n"
		   "backstop_blocklist_last_check_timestamp_seconds %lld\n",
		naddrs, (long long)time(NULL));
	if (fclose(f) != 0 || rename(tmp, path) != 0) {
		fprintf(stderr, "backstop blcheck: %s: %s\n", path, strerror(errno));
		unlink(tmp);
		return -1;
	}
	return 0;
}

static int blcheck_run(const struct bs_config *cfg, const struct dnsbl_sites *sites, const struct cidr_list *addrs,
		       const char *metrics_file)
{
	struct blcheck b = { .sites = sites };
	uint64_t timeout = cfg ? cfg->dnsbl_timeout_ms : 5000;
	const char *why = NULL;
	struct blcheck_addr *as = xcalloc(addrs->n, sizeof *as);
	char (*ips)[INET6_ADDRSTRLEN] = xcalloc(addrs->n, sizeof *ips);
	int rc = EXIT_FAILED;

	b.zone_listed = xcalloc(sites->ndomains + 1, sizeof *b.zone_listed);
	b.zone_failed = xcalloc(sites->ndomains + 1, sizeof *b.zone_failed);
	b.base = event_base_new();
	struct dns_resolver *r = b.base ? dns_resolver_new_opts(b.base, (unsigned)(timeout / 3), 2, &why) : NULL;
	if (r == NULL) {
		fprintf(stderr, "backstop blcheck: cannot start the resolver: %s\n", why ? why : "no event loop");
		goto out;
	}
	if (cfg && dns_resolver_set_servers(r, cfg->dns_servers) < 0) {
		fprintf(stderr, "backstop blcheck: dns_servers = %s: not usable\n", cfg->dns_servers);
		goto out;
	}
	for (size_t i = 0; i < addrs->n; i++) {
		const struct cidr *c = &addrs->items[i];
		inet_ntop(c->family, c->addr, ips[i], sizeof ips[i]);
		as[i] = (struct blcheck_addr){ .b = &b, .ip = ips[i] };
		b.pending++;
		dnsbl_lookup_start(r, b.base, sites, c->family, c->addr, timeout, DNSBL_TXT_ALL, addr_done, &as[i]);
	}
	event_base_dispatch(b.base);
	for (size_t i = 0; i < addrs->n; i++)
		if (as[i].out)
			fputs(as[i].out, stdout);
	fflush(stdout);
	rc = b.listed ? EXIT_LISTED : b.failed ? EXIT_FAILED : EXIT_CLEAN;
	if (metrics_file && blcheck_write_metrics(&b, addrs->n, metrics_file) < 0 && rc == EXIT_CLEAN)
		rc = EXIT_FAILED;
out:
	dns_resolver_free(r);
	if (b.base)
		event_base_free(b.base);
	for (size_t i = 0; i < addrs->n; i++)
		free(as[i].out);
	free(as);
	free(ips);
	free(b.zone_listed);
	free(b.zone_failed);
	return rc;
}

int dnsbl_cli_main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "metrics-file", required_argument, NULL, 'm' },
		{ NULL, 0, NULL, 0 },
	};
	const char *path = CONFIG_DEFAULT_PATH, *metrics_file = NULL;
	bool given = false;
	struct bs_config *cfg = NULL;
	struct dnsbl_sites sites = { 0 };
	struct cidr_list addrs = { 0 };
	char why[256];
	int ch, rc = EXIT_USAGE;

	optind = 1;
	while ((ch = getopt_long(argc, argv, "c:m:", longopts, NULL)) != -1) {
		if (ch == 'm') {
			metrics_file = optarg;
			continue;
		}
		if (ch != 'c') {
			fputs(BLCHECK_USAGE, stderr);
			return EXIT_USAGE;
		}
		path = optarg;
		given = true;
	}
	log_open(false, LOG_LVL_ERR);
	if (blcheck_config(path, given, &cfg) < 0)
		return EXIT_USAGE;
	const char *list = cfg && cfg->blcheck_sites ? cfg->blcheck_sites : dnsbl_cli_default_sites;
	if (dnsbl_sites_parse(list, &sites, why, sizeof why) < 0) {
		fprintf(stderr, "backstop blcheck: blcheck_sites: %s\n", why);
		goto out;
	}
	if (sites.n == 0) {
		fprintf(stderr, "backstop blcheck: blcheck_sites is empty: no list to ask\n");
		goto out;
	}
	if (blcheck_addrs(argc - optind, argv + optind, cfg, &addrs) < 0)
		goto out;
	rc = blcheck_run(cfg, &sites, &addrs, metrics_file);
out:
	dnsbl_sites_free(&sites);
	cidr_list_free(&addrs);
	config_unref(cfg);
	return rc;
}
