/* spf_cli.c - `backstop spf`: the configuration's dns_servers and spf_helo, one evaluation
 * like the engine's check makes at MAIL (the HELO name first with spf_helo, a HELO fail
 * deciding), printed as: the result word alone on the first line, then the identity checked,
 * the records used, what decided, the number of DNS lookups and the explanation or problem. */
#include "spf_cli.h"

#include <arpa/inet.h>
#include <getopt.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "config.h"
#include "dns.h"
#include "dns_cache.h"
#include "spf_dns.h"
#include "spf_eval.h"
#include "util.h"

#define SPF_CLI_USAGE "usage: backstop spf [-c FILE] IP SENDER [HELO]\n"

struct spf_cli_found {
	bool done;
	enum spf_result result;
	enum spf_identity identity;
	char value[600];
	char domain[300];
	char mechanism[256];
	char explanation[SPF_EXP_MAX + 1];
	char problem[512];
	unsigned dns_terms, void_lookups, dns_queries;
	size_t nrecords;
	char records[SPF_RECORDS_MAX][SPF_RECORD_TEXT_MAX + 300];
};

struct spf_cli {
	struct event_base *base;
	struct spf_cli_found found;
};

static void spf_cli_answer(void *arg, const struct spf_answer *a)
{
	struct spf_cli *c = arg;
	struct spf_cli_found *f = &c->found;

	f->done = true;
	f->result = a->result;
	f->identity = a->identity;
	snprintf(f->value, sizeof f->value, "%s", a->identity_value ? a->identity_value : "");
	snprintf(f->domain, sizeof f->domain, "%s", a->domain ? a->domain : "");
	snprintf(f->mechanism, sizeof f->mechanism, "%s", a->mechanism ? a->mechanism : "");
	snprintf(f->explanation, sizeof f->explanation, "%s", a->explanation ? a->explanation : "");
	snprintf(f->problem, sizeof f->problem, "%s", a->problem ? a->problem : "");
	f->dns_terms = a->dns_terms;
	f->void_lookups = a->void_lookups;
	f->dns_queries = a->dns_queries;
	f->nrecords = a->nrecords < SPF_RECORDS_MAX ? a->nrecords : SPF_RECORDS_MAX;
	for (size_t i = 0; i < f->nrecords; i++)
		snprintf(f->records[i], sizeof f->records[i], "%s \"%s\"", a->records[i].domain, a->records[i].text);
	event_base_loopbreak(c->base);
}

/* One identity, until answered or deadline_ms have passed (then temperror). */
static void spf_cli_eval(struct spf_cli *c, const struct spf_dns *dns, const struct spf_request *req,
			 uint64_t deadline_ms)
{
	struct timeval tv = { (time_t)(deadline_ms / 1000), (suseconds_t)(deadline_ms % 1000) * 1000 };

	memset(&c->found, 0, sizeof c->found);
	struct spf_check *sc = spf_check_start(dns, req, spf_cli_answer, c);
	if (!c->found.done) {
		event_base_loopexit(c->base, &tv);
		event_base_dispatch(c->base);
	}
	if (!c->found.done) {
		spf_check_cancel(sc);
		c->found.done = true;
		c->found.result = SPF_TEMPERROR;
		c->found.identity = req->identity;
		snprintf(c->found.problem, sizeof c->found.problem, "no answer within %llu ms",
			 (unsigned long long)deadline_ms);
	}
}

static void spf_cli_print(const struct spf_cli_found *f, bool first)
{
	if (first)
		printf("%s\n", spf_result_name(f->result));
	printf("identity: %s %s%s%s%s\n", spf_identity_name(f->identity), f->value[0] ? f->value : "-",
	       f->domain[0] ? " (domain " : "", f->domain, f->domain[0] ? ")" : "");
	if (!first)
		printf("result: %s\n", spf_result_name(f->result));
	for (size_t i = 0; i < f->nrecords; i++)
		printf("record: %s\n", f->records[i]);
	if (f->nrecords == 0)
		printf("record: none\n");
	printf("decided by: %s\n", f->mechanism[0] ? f->mechanism : "-");
	printf("dns lookups: %u (void lookups: %u, DNS queries sent: %u)\n", f->dns_terms, f->void_lookups,
	       f->dns_queries);
	if (f->result == SPF_FAIL)
		printf("explanation: %s\n", f->explanation[0] ? f->explanation : "-");
	if (f->problem[0])
		printf("problem: %s\n", f->problem);
}

/* "user@example.com", "<user@example.com>", "<>", "example.com" (postmaster@example.com). */
static int spf_cli_sender(const char *arg, char *out, size_t outsz)
{
	size_t len = strlen(arg);

	if (len >= 2 && arg[0] == '<' && arg[len - 1] == '>') {
		arg++;
		len -= 2;
	}
	if (len == 0) {
		out[0] = '\0';
		return 0;
	}
	if (memchr(arg, '@', len) == NULL)
		return snprintf(out, outsz, "postmaster@%.*s", (int)len, arg) < (int)outsz ? 0 : -1;
	return strbuf_copy(out, outsz, arg, len);
}

int spf_cli_main(int argc, char **argv)
{
	static const struct option longopts[] = { { "config", required_argument, NULL, 'c' }, { 0 } };
	const char *path = NULL;
	int ch;

	optind = 1;
	while ((ch = getopt_long(argc, argv, "+c:", longopts, NULL)) != -1) {
		if (ch != 'c') {
			fputs(SPF_CLI_USAGE, stderr);
			return 1;
		}
		path = optarg;
	}
	if (argc - optind < 2 || argc - optind > 3) {
		fputs(SPF_CLI_USAGE, stderr);
		return 1;
	}
	const char *ip = argv[optind], *helo = argc - optind == 3 ? argv[optind + 2] : "";
	struct sockaddr_storage ss;
	memset(&ss, 0, sizeof ss);
	struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
	if (inet_pton(AF_INET, ip, &sin->sin_addr) == 1) {
		sin->sin_family = AF_INET;
	} else if (inet_pton(AF_INET6, ip, &sin6->sin6_addr) == 1) {
		sin6->sin6_family = AF_INET6;
	} else {
		fprintf(stderr, "backstop spf: %s: not an IPv4 or IPv6 address\n", ip);
		return 1;
	}
	char sender[SMTP_PATH_MAX + 16];
	if (spf_cli_sender(argv[optind + 1], sender, sizeof sender) < 0) {
		fprintf(stderr, "backstop spf: %s: sender too long\n", argv[optind + 1]);
		return 1;
	}
	if (sender[0] == '\0' && helo[0] == '\0') {
		fprintf(stderr, "backstop spf: the null sender <> is checked as postmaster@HELO: give HELO\n");
		return 1;
	}
	/* the configuration: -c FILE must load; without -c the default file if there is one */
	struct bs_config *cfg = NULL;
	if (path != NULL || access(CONFIG_DEFAULT_PATH, R_OK) == 0) {
		struct config_errors errs = { 0 };
		cfg = config_load(path ? path : CONFIG_DEFAULT_PATH, &errs);
		for (size_t i = 0; i < errs.n; i++)
			fprintf(stderr, "%s\n", errs.msgs[i]);
		config_errors_free(&errs);
		if (cfg == NULL)
			return 1;
	}
	struct spf_cli c = { .base = event_base_new() };
	const char *why = NULL;
	struct dns_resolver *r = dns_resolver_new_opts(c.base, 2000, 2, &why);
	if (r == NULL || dns_resolver_set_servers(r, cfg ? cfg->dns_servers : NULL) < 0) {
		fprintf(stderr, "backstop spf: DNS resolver: %s\n", why ? why : "dns_servers not usable");
		dns_resolver_free(r);
		event_base_free(c.base);
		config_unref(cfg);
		return 1;
	}
	struct dns_cache *cache = dns_cache_new(1000);
	dns_resolver_set_cache(r, cache);
	struct spf_dns dns;
	spf_dns_init(&dns, r);
	char hostname[256] = "unknown";
	if (cfg != NULL)
		snprintf(hostname, sizeof hostname, "%s", cfg->hostname);
	else if (gethostname(hostname, sizeof hostname) != 0)
		strcpy(hostname, "unknown");
	uint64_t deadline = cfg && cfg->decision_timeout_ms ? cfg->decision_timeout_ms : 25000;
	struct spf_request req = { .client = (const struct sockaddr *)&ss, .sender = sender, .helo = helo,
				   .receiver = hostname, .identity = SPF_ID_MAILFROM };
	bool helo_first = cfg && cfg->spf_helo && sender[0] && helo[0] && helo[0] != '[';
	struct spf_cli_found helo_found = { .done = false };
	if (helo_first) {
		req.identity = SPF_ID_HELO;
		spf_cli_eval(&c, &dns, &req, deadline);
		helo_found = c.found;
		req.identity = SPF_ID_MAILFROM;
	}
	if (helo_first && helo_found.result == SPF_FAIL) {
		spf_cli_print(&helo_found, true); /* RFC 7208 2.3: the HELO fail decides */
	} else {
		spf_cli_eval(&c, &dns, &req, deadline);
		spf_cli_print(&c.found, true);
		if (helo_first)
			spf_cli_print(&helo_found, false);
	}
	dns_resolver_free(r);
	dns_cache_free(cache);
	event_base_free(c.base);
	config_unref(cfg);
	return 0;
}
