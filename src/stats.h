/* stats.h - the SMTP front end's counters: one block per worker thread, written only by its
 * worker with relaxed atomics (no lock, no shared cache line on the hot path) and summed by a
 * reader (the metrics endpoint, backstop status) at any time; and the process-wide facts kept by
 * the server (start time, configuration generation, last reload). Owned by the server. */
#ifndef BACKSTOP_STATS_H
#define BACKSTOP_STATS_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Why a session ended. */
enum stats_end {
	STATS_END_QUIT = 0,  /* the client said QUIT */
	STATS_END_LOST,      /* the client closed or the connection broke */
	STATS_END_TIMEOUT,   /* command_timeout */
	STATS_END_ERRORS,    /* max_errors */
	STATS_END_JUNK,      /* max_junk_commands */
	STATS_END_PROTOCOL,  /* pregreet, pipelining into DATA, a non-SMTP protocol */
	STATS_END_TLS,       /* the TLS handshake or the TLS layer failed */
	STATS_END_SHUTDOWN,  /* the daemon stopped */
	STATS_END_OTHER,     /* closed by backstop for another reason */
	STATS_END_COUNT
};

/* The command a reply answers. */
enum stats_stage {
	STATS_STAGE_CONNECT = 0, /* the banner */
	STATS_STAGE_HELO,        /* HELO, EHLO */
	STATS_STAGE_MAIL,
	STATS_STAGE_RCPT,
	STATS_STAGE_DATA,        /* the DATA command */
	STATS_STAGE_EOD,         /* the final dot */
	STATS_STAGE_OTHER,       /* RSET, NOOP, QUIT, VRFY, STARTTLS, unknown ..., and the reply that ends a session */
	STATS_STAGE_COUNT
};

/* Commands counted per verb: the smtp_verb values (0 = unknown), then invalid lines. */
#define STATS_VERBS 16
#define STATS_VERB_INVALID (STATS_VERBS - 1)

/* Reply classes 2xx..5xx at index 0..3. */
#define STATS_CLASSES 4

struct stats_worker {
	atomic_ulong accepted;                   /* sessions started */
	atomic_ulong refused;                    /* refused at accept (connection limits) */
	atomic_ulong ended[STATS_END_COUNT];
	atomic_ulong commands[STATS_VERBS];
	atomic_ulong replies[STATS_STAGE_COUNT][STATS_CLASSES];
	atomic_ulong tls_ok, tls_failed;         /* STARTTLS handshakes with clients */
	atomic_ulong error_delays;               /* refused RCPTs held back by error_delay */
	atomic_ulong backend_final[STATS_CLASSES]; /* backends' replies to the final dot */
	atomic_ulong pooled;                     /* idle backend connections in this worker's pool (gauge) */
} __attribute__((aligned(64)));

static inline void stats_add(atomic_ulong *c, unsigned long n)
{
	atomic_fetch_add_explicit(c, n, memory_order_relaxed);
}

/* Counting helpers: w may be NULL (sessions run by tests without counters). */
void stats_reply(struct stats_worker *w, enum stats_stage stage, int code);
void stats_backend_final(struct stats_worker *w, int code);
void stats_command(struct stats_worker *w, unsigned verb); /* STATS_VERB_INVALID for invalid lines */
void stats_session_end(struct stats_worker *w, enum stats_end why);

/* Plain sums over every worker's block. */
struct stats_totals {
	uint64_t accepted, refused, open;
	uint64_t ended[STATS_END_COUNT];
	uint64_t commands[STATS_VERBS];
	uint64_t replies[STATS_STAGE_COUNT][STATS_CLASSES];
	uint64_t tls_ok, tls_failed;
	uint64_t error_delays;
	uint64_t backend_final[STATS_CLASSES];
	uint64_t pooled;
};
void stats_sum(struct stats_worker *const *w, size_t n, struct stats_totals *out);

/* Process-wide facts kept by the server (written on the main thread, read anywhere). */
struct stats_process {
	uint64_t start_time;            /* wall clock, seconds */
	atomic_ulong generation;        /* configuration generation: 1 at start, +1 per applied reload */
	atomic_ulong reloads_ok, reloads_failed;
	atomic_ulong last_reload_time;  /* wall clock, seconds (0: never reloaded) */
	atomic_bool last_reload_ok;     /* true until a reload fails */
};
void stats_process_init(struct stats_process *p, uint64_t start_time);
void stats_process_reloaded(struct stats_process *p, bool ok, uint64_t now);

const char *stats_end_name(enum stats_end e);     /* "quit", "lost", ... */
const char *stats_stage_name(enum stats_stage s); /* "connect", "helo", ... */
const char *stats_verb_name(unsigned verb);       /* "helo", ..., "unknown", "invalid" */
enum stats_stage stats_stage_of_verb(unsigned verb);

#endif
