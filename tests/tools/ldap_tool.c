/* ldap_tool.c - drives the ldap: recipient source and `backstop sync` for the integration tests
 * (tests/integration/test_ldap.py), without the SMTP server around them.
 *   ldap_tool lookup -c FILE NAME   reads lines of addresses from stdin; each line is one batch,
 *                                   all looked up at once on one event loop; prints per address
 *                                   "N VERDICT REASON", then ". max_loop_gap_ms=G" (how late a
 *                                   5 ms timer ran, not counting the time the loop's thread
 *                                   waited for a CPU: the loop must never block). An address
 *                                   "hex:HH..." is decoded first (to send NUL and such); "!ADDR"
 *                                   is looked up and cancelled at once (prints "N cancelled").
 *   ldap_tool sync ARGS...          ldap_sync_main(), as `backstop sync ARGS...`. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <event2/thread.h>

#include "config.h"
#include "ldap_sync.h"
#include "log.h"
#include "rcpt.h"
#include "util.h"

extern const struct rcpt_source_type rcpt_ldap_type;

#define BATCH_MAX 256

struct slot {
	struct rcpt_addr addr;
	int done;
	enum rcpt_verdict verdict;
	char reason[RCPT_REASON_MAX];
};

struct batch {
	struct event_base *base;
	struct slot slots[BATCH_MAX];
	size_t n, pending;
	uint64_t last_tick, last_wait, max_gap;
};

static void on_answer(void *arg, const struct rcpt_answer *ans)
{
	struct slot *s = arg;
	s->done = 1;
	s->verdict = ans->verdict;
	snprintf(s->reason, sizeof(s->reason), "%s", ans->reason);
}

/* Milliseconds this thread has spent runnable but waiting for a CPU (second field of Linux's
 * schedstat), 0 where the kernel does not say. A loop descheduled on a busy machine (or slowed
 * by sanitizers) is late without being blocked; a loop blocked in a call is not runnable, so
 * that time still counts (and so does a wait for a lock whose holder was descheduled). */
static uint64_t runqueue_wait_ms(void)
{
	unsigned long long run = 0, wait = 0;
	FILE *f = fopen("/proc/thread-self/schedstat", "r");

	if (f == NULL)
		return 0;
	if (fscanf(f, "%llu %llu", &run, &wait) != 2)
		wait = 0;
	fclose(f);
	return wait / 1000000u;
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
	struct batch *b = arg;
	uint64_t now = now_ms(), wait = runqueue_wait_ms();
	uint64_t gap = now - b->last_tick, waited = wait - b->last_wait;

	gap = gap > waited ? gap - waited : 0;
	if (gap > b->max_gap)
		b->max_gap = gap;
	b->last_tick = now;
	b->last_wait = wait;
	b->pending = 0;
	for (size_t i = 0; i < b->n; i++)
		b->pending += b->slots[i].done == 0;
	if (b->pending == 0)
		event_base_loopbreak(b->base);
}

static size_t unhex(const char *in, char *out, size_t outsz)
{
	size_t n = 0;
	for (; in[0] && in[1] && n < outsz; in += 2) {
		unsigned v;
		if (sscanf(in, "%2x", &v) != 1)
			break;
		out[n++] = (char)v;
	}
	return n;
}

/* Fill an address as the chain would hand it over, but without any normalisation: the tool
 * must be able to send anything. */
static void slot_set(struct slot *s, const char *word)
{
	size_t len = strlen(word);
	memset(s, 0, sizeof(*s));
	if (strncmp(word, "hex:", 4) == 0)
		len = unhex(word + 4, s->addr.full, RCPT_ADDR_MAX);
	else
		strbuf_copy(s->addr.full, sizeof(s->addr.full), word, len > RCPT_ADDR_MAX ? 0 : len);
	for (size_t i = 0; i < len && i <= RCPT_ADDR_MAX; i++)
		if (s->addr.full[i] == '@')
			s->addr.at = i;
}

static void run_batch(void *state, struct batch *b, char *line)
{
	struct rcpt_query *queries[BATCH_MAX];
	bool cancelled[BATCH_MAX] = { false };
	struct event *tick;
	struct timeval tv = { 0, 5000 };

	b->n = 0;
	for (char *w = strtok(line, " \t\r\n"); w != NULL && b->n < BATCH_MAX; w = strtok(NULL, " \t\r\n")) {
		cancelled[b->n] = w[0] == '!';
		slot_set(&b->slots[b->n++], w + (w[0] == '!'));
	}
	/* the clock starts before the lookups: a lookup call that blocks is a late tick too */
	b->last_tick = now_ms();
	b->last_wait = runqueue_wait_ms();
	b->max_gap = 0;
	for (size_t i = 0; i < b->n; i++) {
		queries[i] = rcpt_ldap_type.lookup(state, b->base, &b->slots[i].addr, on_answer, &b->slots[i]);
		if (cancelled[i] && queries[i] != NULL) {
			rcpt_ldap_type.cancel(queries[i]);
			b->slots[i].done = 2;
		}
	}
	tick = event_new(b->base, -1, EV_PERSIST, on_tick, b);
	event_add(tick, &tv);
	event_base_dispatch(b->base);
	event_free(tick);
	for (size_t i = 0; i < b->n; i++) {
		if (b->slots[i].done == 2)
			printf("%zu cancelled\n", i);
		else
			printf("%zu %s %s\n", i, rcpt_verdict_name(b->slots[i].verdict), b->slots[i].reason);
	}
	printf(". max_loop_gap_ms=%llu\n", (unsigned long long)b->max_gap);
	fflush(stdout);
}

static int lookup_main(int argc, char **argv)
{
	struct config_errors errs = { 0 };
	struct bs_config *cfg;
	struct batch *b;
	char why[512], line[16384];
	void *state;

	if (argc != 4 || strcmp(argv[1], "-c") != 0) {
		fprintf(stderr, "usage: ldap_tool lookup -c FILE NAME\n");
		return 2;
	}
	cfg = config_load(argv[2], &errs);
	for (size_t i = 0; i < errs.n; i++)
		fprintf(stderr, "%s\n", errs.msgs[i]);
	config_errors_free(&errs);
	if (cfg == NULL)
		return 1;
	state = rcpt_ldap_type.open(argv[3], cfg, why, sizeof(why));
	config_unref(cfg); /* the source keeps its own copy */
	if (state == NULL) {
		fprintf(stderr, "open: %s\n", why);
		return 1;
	}
	b = xcalloc(1, sizeof(*b));
	b->base = event_base_new();
	while (fgets(line, sizeof(line), stdin) != NULL)
		run_batch(state, b, line);
	rcpt_ldap_type.stats(state, stdout);
	rcpt_ldap_type.close(state);
	event_base_loop(b->base, EVLOOP_NONBLOCK); /* frees the answers of cancelled queries */
	event_base_free(b->base);
	free(b);
	return 0;
}

int main(int argc, char **argv)
{
	evthread_use_pthreads();
	signal(SIGPIPE, SIG_IGN);
	log_open(false, getenv("LDAP_TOOL_DEBUG") ? LOG_LVL_DEBUG : LOG_LVL_INFO);
	if (argc >= 2 && strcmp(argv[1], "lookup") == 0)
		return lookup_main(argc - 1, argv + 1);
	if (argc >= 2 && strcmp(argv[1], "sync") == 0)
		return ldap_sync_main(argc - 1, argv + 1);
	fprintf(stderr, "usage: ldap_tool lookup -c FILE NAME | ldap_tool sync ARGS...\n");
	return 2;
}
