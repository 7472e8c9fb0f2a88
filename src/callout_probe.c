/* callout_probe.c - `backstop probe`: connect to a validation server, EHLO, MAIL FROM, RCPT TO,
 * QUIT (never DATA), printing each line of the dialogue and the verdict, judged by the same
 * rules as the callout: source (callout_verdict). */
#include "callout_probe.h"

#include <getopt.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "callout_pool.h"
#include "config_value.h"
#include "log.h"
#include "smtp_client.h"
#include "util.h"

#define PROBE_USAGE 3

struct probe {
	struct event_base *base;
	struct smtp_client *client;
	const char *sender, *address;
	struct smtp_reply mail;
	enum rcpt_verdict verdict;
	char why[SMTP_REPLY_TEXT_MAX + 64];
	bool done;
};

static void probe_trace(void *arg, char dir, const char *line, size_t len)
{
	printf("%c %.*s\n", dir, (int)len, line);
	fflush(stdout);
}

static void probe_finish(struct probe *p, enum rcpt_verdict v, const char *what, const struct smtp_reply *r)
{
	char code[16] = "";

	p->verdict = v;
	if (r->code)
		snprintf(code, sizeof code, "%d ", r->code);
	/* a long reply is cut short: the explanation of a probe, not data */
	p->why[0] = '\0';
	strbuf_append(p->why, sizeof p->why, what);
	strbuf_append(p->why, sizeof p->why, ": ");
	strbuf_append(p->why, sizeof p->why, code);
	if (r->code && r->enhanced[0]) {
		strbuf_append(p->why, sizeof p->why, r->enhanced);
		strbuf_append(p->why, sizeof p->why, " ");
	}
	strbuf_append(p->why, sizeof p->why, r->text);
	p->done = true;
	event_base_loopbreak(p->base);
}

static void probe_mail_cb(void *arg, const struct smtp_reply *r)
{
	struct probe *p = arg;
	p->mail = *r;
}

static void probe_rcpt_cb(void *arg, const struct smtp_reply *r)
{
	struct probe *p = arg;

	if (p->mail.code / 100 != 2)
		probe_finish(p, RCPT_UNAVAILABLE, "MAIL FROM refused", &p->mail);
	else
		probe_finish(p, callout_verdict(r),
			     callout_policy_reject(r) ? "RCPT refused for policy, not as unknown (server misconfigured?)" : "RCPT", r);
}

static void probe_ready_cb(void *arg, const struct smtp_reply *r)
{
	struct probe *p = arg;
	char line[600];

	if (r->code != 250) {
		probe_finish(p, RCPT_UNAVAILABLE, "session", r);
		return;
	}
	snprintf(line, sizeof line, "MAIL FROM:<%s>", p->sender);
	smtp_client_command(p->client, line, probe_mail_cb, p);
	callout_rcpt_line(p->address, line, sizeof line);
	smtp_client_command(p->client, line, probe_rcpt_cb, p);
}

struct probe_args {
	const char *server, *address, *sender, *helo;
	uint64_t timeout_ms;
	struct sockaddr_storage ss;
	socklen_t sslen;
};

static int probe_parse(int argc, char **argv, struct probe_args *a)
{
	static const struct option longopts[] = {
		{ "sender", required_argument, NULL, 's' }, { "helo", required_argument, NULL, 'H' },
		{ "timeout", required_argument, NULL, 't' }, { NULL, 0, NULL, 0 },
	};
	const char *why = NULL;
	int ch;

	*a = (struct probe_args){ .sender = "", .helo = "localhost", .timeout_ms = 10000 };
	optind = 1;
	while ((ch = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		if (ch == 's')
			a->sender = optarg;
		else if (ch == 'H')
			a->helo = optarg;
		else if (ch != 't' || cfgval_duration(optarg, &a->timeout_ms, &why) != 0 || a->timeout_ms == 0)
			return fprintf(stderr, "backstop probe: bad option%s%s\n", why ? ": " : "", why ? why : ""), -1;
	}
	if (argc - optind != 2)
		return -1;
	a->server = argv[optind];
	a->address = argv[optind + 1];
	return 0;
}

/* HOST:PORT to an address (a name is resolved here: a command-line tool may block). */
static int probe_resolve(struct probe_args *a)
{
	struct bs_hostport_list hl = { NULL, 0 };
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *res = NULL;
	const char *why = NULL;
	int rc = -1;

	if (cfgval_hostport_list(a->server, &hl, &why) != 0 || hl.n != 1) {
		fprintf(stderr, "backstop probe: %s: expected HOST:PORT\n", a->server);
	} else if ((rc = getaddrinfo(hl.items[0].host, hl.items[0].port[0] ? hl.items[0].port : "25", &hints, &res)) != 0) {
		fprintf(stderr, "backstop probe: %s: %s\n", hl.items[0].host, gai_strerror(rc));
		rc = -2;
	} else {
		memcpy(&a->ss, res->ai_addr, res->ai_addrlen);
		a->sslen = res->ai_addrlen;
		freeaddrinfo(res);
	}
	cfgval_hostport_list_free(&hl);
	return rc;
}

int callout_probe_main(int argc, char **argv)
{
	struct probe_args a;
	char line[600];

	if (probe_parse(argc, argv, &a) != 0) {
		fprintf(stderr, "usage: backstop probe HOST:PORT ADDRESS [--sender ADDR] [--helo NAME] [--timeout 10s]\n");
		return PROBE_USAGE;
	}
	if (callout_rcpt_line(a.address, line, sizeof line) != 0 || strchr(a.sender, '\r') || strchr(a.sender, '\n')) {
		fprintf(stderr, "backstop probe: %s: not an address\n", a.address);
		return PROBE_USAGE;
	}
	int rc = probe_resolve(&a);
	if (rc != 0)
		return rc == -2 ? 2 : PROBE_USAGE;
	log_open(false, LOG_LVL_WARN);
	struct probe p = { .base = event_base_new(), .sender = a.sender, .address = a.address };
	struct smtp_client_opts o = { .helo_name = a.helo, .tls = DELIVER_TLS_NONE, .connect_timeout_ms = a.timeout_ms,
				      .command_timeout_ms = a.timeout_ms, .data_timeout_ms = a.timeout_ms };
	p.client = smtp_client_new(p.base, (struct sockaddr *)&a.ss, a.sslen, &o, probe_ready_cb, &p);
	smtp_client_set_trace(p.client, probe_trace, &p);
	while (!p.done)
		event_base_loop(p.base, EVLOOP_ONCE);
	smtp_client_free(p.client, true);
	event_base_free(p.base);
	printf("verdict: %s (%s)\n", rcpt_verdict_name(p.verdict), p.why);
	return p.verdict == RCPT_VALID ? 0 : p.verdict == RCPT_INVALID ? 1 : 2;
}
