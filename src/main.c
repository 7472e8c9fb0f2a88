/* main.c - the backstop command: parses the subcommand and its options and hands over to the
 * module that does the work (server_run for `run`, config_load for `check-config`, ...). */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/thread.h>

#include "callout_probe.h"
#include "config.h"
#include "config_audit.h"
#include "dnsbl_cli.h"
#include "config_dump.h"
#include "control_cli.h"
#include "ldap_sync.h"
#include "log.h"
#include "rcpt.h"
#include "rcpt_map.h"
#include "runtime.h"
#include "server.h"
#include "spf_cli.h"
#include "verify_cli.h"
#include "version.h"

#define DEFAULT_CONFIG BACKSTOP_SYSCONFDIR "/backstop/backstop.conf"

struct command {
	const char *name;
	int (*main)(int argc, char **argv);
	const char *usage;
	const char *summary;
	const char *options; /* --help: the command's own options, one "  --name ARG  what" per line */
};

static int cmd_run(int argc, char **argv);
static int cmd_check_config(int argc, char **argv);
static int cmd_config(int argc, char **argv);

/* Subcommands that parse their own options get argv from their name on. */
static const struct command commands[] = {
	{ "run", cmd_run, "run [-c FILE]", "run the gateway in the foreground", NULL },
	{ "check-config", cmd_check_config, "check-config [-c FILE]",
	  "validate FILE; print FILE:LINE: message per error; exit 0 if valid, 1 if not", NULL },
	{ "verify", verify_cli_main, "verify [-c FILE] [--no-cache] [--store] ADDRESS...",
	  "verdict of each address with its source and cache state; exit 0 all valid, 1 any invalid, 2 any unavailable",
	  "      --no-cache      ask the sources; do not read the verdict cache\n"
	  "      --store         write each verdict to the verdict cache (never done without it)\n" },
	{ "probe", callout_probe_main, "probe HOST:PORT ADDRESS [--sender ADDR] [--helo NAME] [--timeout 10s]",
	  "one SMTP callout, printing the dialogue; exit 0 valid, 1 invalid, 2 unavailable",
	  "      --sender ADDR   MAIL FROM address (default: the null sender <>)\n"
	  "      --helo NAME     EHLO name (default localhost)\n"
	  "      --timeout DUR   for the connection and each reply (default 10s)\n" },
	{ "cache", cache_cli_main, "cache [-c FILE] [--socket PATH] stats|show ADDR|purge ADDR|@DOMAIN|flush",
	  "inspect or edit the running daemon's verdict cache (through its control socket; when it cannot be "
	  "reached, the store itself, saying so); exit 0 done, 1 failed, 3 usage, 4 daemon unreachable with "
	  "cache = memory: (nothing else to act on)",
	  "  -s, --socket PATH   the daemon's control socket (default: control_socket from FILE)\n"
	  "  stats               the cache's figures: entries, hits, misses (the daemon's)\n"
	  "  show ADDR           the cached verdict, its source, age and time left\n"
	  "  purge ADDR|@DOMAIN  remove one verdict, or every verdict of a domain; the daemon's next\n"
	  "                      answer for it asks the sources again\n"
	  "  flush               remove everything\n" },
	{ "spf", spf_cli_main, "spf [-c FILE] IP SENDER [HELO]",
	  "evaluate SPF for a client IP and a sender (<> for the null sender: give HELO) with FILE's dns_servers; "
	  "prints the result word alone, then the identity, the records used, what decided, the DNS lookups and "
	  "the explanation; exit 0 for any result, 1 for an error in the command",
	  "  SENDER              user@domain, <user@domain>, a domain (postmaster@domain), or <>\n"
	  "  HELO                the client's HELO name (needed for <>; checked first with spf_helo = on)\n" },
	{ "status", status_cli_main, "status [-c FILE] [--socket PATH]",
	  "the running daemon's figures: version, uptime, configuration generation, workers, sessions, "
	  "backends and sources with their health, cache, decisions; exit 0, 2 usage, 4 daemon unreachable",
	  "  -s, --socket PATH   the daemon's control socket (default: control_socket from FILE)\n" },
	{ "reload", reload_cli_main, "reload [-c FILE] [--socket PATH]",
	  "reload the running daemon's configuration (as SIGHUP) and print the result; exit 0 applied, "
	  "1 refused (FILE:LINE errors printed, the running configuration kept), 2 usage, 4 daemon unreachable",
	  "  -s, --socket PATH   the daemon's control socket (default: control_socket from FILE)\n" },
	{ "config", cmd_config, "config [-c FILE] [-n|--non-default]",
	  "print the effective configuration, every default filled in; exit 0, 1 the file has errors",
	  "  -n, --non-default   only what differs from the defaults (as postconf -n)\n" },
	{ "sync", ldap_sync_main, "sync [-c FILE] ldap:NAME --output PATH [--dry-run] [--max-shrink PCT] [--force]",
	  "export a directory's addresses into a map file; exit 0 changed, 3 unchanged, 1 error",
	  "  -o, --output PATH   the map file to write (required)\n"
	  "  -n, --dry-run       print the difference and what would be written; write nothing\n"
	  "  -s, --max-shrink PCT  refuse to remove more than PCT % of the addresses (default 10)\n"
	  "  -f, --force         write even when more than --max-shrink % would go\n" },
	{ "blcheck", dnsbl_cli_main, "blcheck [-c FILE] [-m FILE] [IP ...]",
	  "is each address on the DNS blocklists of blcheck_sites? exit 0 listed nowhere, 1 listed somewhere, "
	  "2 lookups failed, 3 usage or configuration error",
	  "  -m, --metrics-file FILE  also write the per-list figures there for Prometheus (node_exporter's\n"
	  "                      textfile collector: backstop_blocklist_listed{zone})\n"
	  "  IP ...              the addresses to check (default: blcheck_addresses in FILE)\n"
	  "                      without -c, FILE is read when it exists; without it, the built-in list\n"
	  "                      and the system's resolver are used\n" },
};

static void usage(FILE *out)
{
	fprintf(out, "usage: backstop COMMAND [options]\n\n"
		     "backstop is an SMTP edge gateway that refuses at RCPT what it cannot deliver,\n"
		     "delivers in-line to the backend, and so never bounces.\n\ncommands:\n");
	for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
		fprintf(out, "  backstop %s\n      %s\n", commands[i].usage, commands[i].summary);
	fprintf(out, "\noptions of the commands:\n"
		     "  -c, --config FILE            configuration file (default %s)\n"
		     "  -h, --help                   help of one command: backstop COMMAND --help\n"
		     "\nbackstop --help, backstop --version\n"
		     "\nSee backstop(8) and backstop.conf(5).\n", DEFAULT_CONFIG);
}

static void command_usage(const struct command *c, FILE *out)
{
	fprintf(out, "usage: backstop %s\n\n%s\n\n", c->usage, c->summary);
	if (strstr(c->usage, "-c FILE") != NULL)
		fprintf(out, "  -c, --config FILE   configuration file (default %s)\n", DEFAULT_CONFIG);
	if (c->options != NULL)
		fputs(c->options, out);
	fprintf(out, "  -h, --help          this help\n\nSee backstop(8).\n");
}

/* Parse "-c FILE" / "--config FILE" / "-h" for a subcommand; returns 0, 1 (help shown) or -1. */
static int parse_config_opt(const struct command *c, int argc, char **argv, const char **path)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' }, { "help", no_argument, NULL, 'h' }, { 0 }
	};
	int ch;

	*path = DEFAULT_CONFIG;
	optind = 1;
	while ((ch = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
		switch (ch) {
		case 'c': *path = optarg; break;
		case 'h': command_usage(c, stdout); return 1;
		default: command_usage(c, stderr); return -1;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "backstop %s: unexpected argument: %s\n", c->name, argv[optind]);
		return -1;
	}
	return 0;
}

static struct bs_config *load_or_report(const char *path, FILE *out)
{
	struct config_errors errs = { 0 };
	struct bs_config *cfg = config_load(path, &errs);
	for (size_t i = 0; i < errs.n; i++)
		fprintf(out, "%s\n", errs.msgs[i]);
	config_errors_free(&errs);
	return cfg;
}

/* A map: file must exist and parse; the daemon would keep answering 451 until it does. */
static int check_map_file(const struct bs_config *cfg, const struct bs_domain *d, const char *path)
{
	char why[512];
	if (rcpt_map_check(path, why, sizeof why) == 0)
		return 0;
	printf("%s:%u: [domain %s] map: %s\n", cfg->path, d->line, d->name, why);
	return 1;
}

/* Open every recipient source the way the daemon would; report those that fail (the daemon
 * would start, but tempfail their lookups). */
static int check_sources(const struct bs_config *cfg)
{
	int bad = 0;
	log_open(false, LOG_LVL_ERR);
	for (size_t i = 0; i < cfg->ndomains; i++) {
		const struct bs_domain *d = &cfg->domains[i];
		for (size_t j = 0; j < d->verify.n; j++) {
			const char *arg;
			if (rcpt_type_find(d->verify.items[j], &arg) == &rcpt_map_type) {
				bad += check_map_file(cfg, d, arg);
				continue;
			}
			struct rcpt_source *src = rcpt_source_open(d->verify.items[j], cfg);
			if (src->surrogate) {
				printf("%s:%u: [domain %s] verify source %s cannot be opened; its lookups would answer 451\n",
				       cfg->path, d->line, d->name, d->verify.items[j]);
				bad++;
			}
			rcpt_source_close(src);
		}
	}
	return bad;
}

static int cmd_check_config(int argc, char **argv)
{
	const char *path;
	int rc = parse_config_opt(&commands[1], argc, argv, &path);
	if (rc != 0)
		return rc > 0 ? 0 : 2;
	struct bs_config *cfg = load_or_report(path, stdout);
	if (cfg == NULL)
		return 1;
	char why[512];
	struct runtime_opts o = { 0 };
	struct bs_runtime *rt = runtime_new(config_ref(cfg), &o, why, sizeof why);
	if (rt == NULL) {
		printf("%s\n", why);
		config_unref(cfg);
		return 1;
	}
	runtime_unref(rt);
	unsigned warnings = 0;
	int bad = check_sources(cfg);
	bad += config_audit(cfg, stdout, &warnings);
	if (bad == 0 && warnings == 0)
		printf("%s: OK (%zu domains)\n", path, cfg->ndomains);
	else if (bad == 0)
		printf("%s: OK (%zu domains, %u warnings)\n", path, cfg->ndomains, warnings);
	config_unref(cfg);
	return bad ? 1 : 0;
}

static int cmd_config(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' }, { "non-default", no_argument, NULL, 'n' },
		{ "help", no_argument, NULL, 'h' }, { 0 }
	};
	const char *path = DEFAULT_CONFIG;
	bool non_default = false;
	int ch;

	optind = 1;
	while ((ch = getopt_long(argc, argv, "c:nh", opts, NULL)) != -1) {
		if (ch == 'c')
			path = optarg;
		else if (ch == 'n')
			non_default = true;
		else
			return 2; /* getopt said why; -h is answered by main() */
	}
	if (optind < argc) {
		fprintf(stderr, "backstop config: unexpected argument: %s\n", argv[optind]);
		return 2;
	}
	struct bs_config *cfg = load_or_report(path, stderr);
	if (cfg == NULL)
		return 1;
	config_dump(stdout, cfg, non_default);
	config_unref(cfg);
	return 0;
}

static int cmd_run(int argc, char **argv)
{
	const char *path;
	int rc = parse_config_opt(&commands[0], argc, argv, &path);
	if (rc != 0)
		return rc > 0 ? 0 : 2;
	struct bs_config *cfg = load_or_report(path, stderr);
	if (cfg == NULL) {
		fprintf(stderr, "backstop: %s has errors; not starting\n", path);
		return 1;
	}
	log_open(cfg->log == LOG_TARGET_SYSLOG, (enum log_level)cfg->log_level);
	log_notice("backstop %s starting with %s", BACKSTOP_VERSION, path);
	return server_run(path, cfg);
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "help") == 0) {
		usage(stdout);
		return 0;
	}
	if (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "-V") == 0) {
		printf("backstop %s\n", BACKSTOP_VERSION);
		return 0;
	}
	evthread_use_pthreads();
	/* every command talks to sockets (backends, validation servers, LDAP): a peer that hangs up
	 * while we write is an error to report (EPIPE), never a reason to die */
	signal(SIGPIPE, SIG_IGN);
	for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) {
		if (strcmp(argv[1], commands[i].name) != 0)
			continue;
		for (int a = 2; a < argc && strcmp(argv[a], "--") != 0; a++) {
			if (strcmp(argv[a], "--help") == 0 || strcmp(argv[a], "-h") == 0) {
				command_usage(&commands[i], stdout);
				return 0;
			}
		}
		return commands[i].main(argc - 1, argv + 1);
	}
	fprintf(stderr, "backstop: unknown command '%s'\n\n", argv[1]);
	usage(stderr);
	return 2;
}
