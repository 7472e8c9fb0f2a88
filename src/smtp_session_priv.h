/* smtp_session_priv.h - the session structure and the functions shared by the files that make
 * up the session: smtp_session.c (I/O, lifecycle, replies), smtp_commands.c (one handler per
 * verb), smtp_decide.c (the engine's stages but RCPT), smtp_rcpt.c (RCPT) and smtp_data_phase.c
 * (message content). Not for other modules. */
#ifndef BACKSTOP_SMTP_SESSION_PRIV_H
#define BACKSTOP_SMTP_SESSION_PRIV_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include <event2/bufferevent.h>
#include <event2/event.h>

#include "config.h"
#include "engine.h"
#include "runtime.h"
#include "smtp_data.h"
#include "smtp_parse.h"
#include "smtp_session.h"
#include "stats.h"

enum smtp_state {
	SMTP_STATE_GREETING, /* banner not sent yet (greet_delay running) */
	SMTP_STATE_INIT,     /* waiting for EHLO/HELO */
	SMTP_STATE_READY,    /* greeted, no transaction */
	SMTP_STATE_MAIL,     /* MAIL accepted: RCPT, DATA */
	SMTP_STATE_DATA,     /* reading message content */
	SMTP_STATE_TLS,      /* STARTTLS answered; handshake pending or running */
	SMTP_STATE_CLOSING,  /* last reply queued; freed once it is written */
};

/* Why the session is not processing input: each asynchronous step resumes only the pause it
 * made, so a late or repeated callback of another step can never wake the session. */
enum session_wait {
	SESSION_WAIT_NONE = 0,
	SESSION_WAIT_RCPT,      /* queued RCPTs: a command waits for their replies, or for room */
	SESSION_WAIT_DATA,      /* DATA put to the backend: its 354 or its refusal */
	SESSION_WAIT_DRAIN,     /* too much content waiting to be written to the backend */
	SESSION_WAIT_FINAL,     /* the final dot is the backend's: its reply to it */
	SESSION_WAIT_DECISION,  /* the engine decides the command being run (HELO, MAIL, DATA, end of data) */
	SESSION_WAIT_CONNECT,   /* a RCPT waits for the CONNECT stage's decision, which applies to it */
};

struct smtp_rcpt {
	struct smtp_address addr;
	struct smtp_rcpt_params params;
	const struct bs_domain *domain;
};

/* One mail transaction (MAIL ... end of DATA or RSET). */
struct smtp_tx {
	struct smtp_address from;
	struct smtp_mail_params params;
	struct smtp_rcpt *rcpts;
	size_t nrcpts, rcpts_cap;
	struct smtp_data_decoder dec;
	bool too_big;
	bool refused;          /* backstop refused the content: nothing more goes to the backend */
	unsigned seq;          /* transaction number in the session, for the Received id */
	uint64_t started_ms;
	char *headers;         /* header fields the checks add on delivery, after Received: (owned) */
	size_t headers_len;
	char *facts;           /* what MAIL's checks found, for every RCPT's request (owned), or NULL */
	struct hdr_filter *hf; /* the header section on its way to the backend (owned), or NULL */
};

/* Header fields added by checks, per transaction, at most (more are dropped with a log line). */
#define SESSION_TX_HEADERS_MAX 8192

/* What the CONNECT stage refused with, applied to every RCPT of the session. */
struct session_refusal {
	int code;
	char enhanced[8];
	char text[ENGINE_TEXT_MAX];
	const char *check;
};

struct session_decision; /* smtp_decide.c */
struct hdr_filter;

struct smtp_session {
	const struct session_env *env;   /* the owner's (borrowed) */
	struct smtp_session *prev, *next; /* env->list */
	struct bs_runtime *rt;            /* generation this session started with (held) */
	const struct bs_config *cfg;      /* rt->cfg */
	struct bufferevent *bev;
	evutil_socket_t fd;
	struct event *greet_timer;
	struct event *cmd_deadline;       /* a whole command line must arrive within command_timeout */
	enum smtp_state state;
	bool esmtp;                       /* greeted with EHLO */
	bool tls;                         /* TLS active */
	bool discarding_line;             /* skipping the rest of an over-long command line */
	enum session_wait paused;         /* waiting on an asynchronous step; input not processed */
	bool output_blocked;              /* the client is not reading its replies; input waits */
	bool pregreet;
	bool close_after_final;           /* shutting down: end once the final reply is relayed */
	bool eof;                         /* the client half-closed: finish what is owed, then close */
	unsigned errors, junk;
	size_t input_behind;              /* octets received after the command line being run */
	struct smtp_tx *tx;
	struct relay *relay;              /* backend side (in-line delivery); NULL until needed */
	struct rcpt_pending *rq_head, *rq_tail; /* RCPTs being decided, in command order (owned) */
	size_t rq_len;
	bool rq_abandoned;                /* a 421 at shutdown answered the RCPTs still queued */
	struct event *rq_delay;           /* the error_delay of the refusal heading the queue */
	unsigned error_replies;           /* 4xx/5xx replies written (452 4.5.3 not), for error_delay */
	struct session_decision *decision; /* the command whose decision is awaited (owned), or NULL */
	struct engine_query *banner_q;    /* the BANNER stage being decided (banner held), or NULL */
	struct engine_query *connect_q;   /* the CONNECT stage being decided, or NULL */
	struct session_refusal *connect_refusal; /* what CONNECT refused with (owned), or NULL */
	char *connect_headers;            /* header fields from CONNECT and HELO checks, for every */
	char *helo_headers;               /* transaction (owned), or NULL */
	struct event *watchdog;           /* while paused for backend backpressure */
	struct event *flush;              /* writes the replies collected in this loop turn (plain) */
	bool flush_pending;
	unsigned n_tx;
	char id[24];
	char client_ip[INET6_ADDRSTRLEN];
	struct sockaddr_storage peer;
	char helo[SMTP_DOMAIN_MAX + 1];   /* safe for headers and logs (smtp_helo_parse's name) */
	char tls_version[16];
	char tls_cipher[64];
	uint64_t start_ms;
	const char *last_verb;           /* for "lost connection after X" */
	unsigned n_mail, n_rcpt, n_rcpt_ok, n_data, n_data_ok;
	enum stats_stage reply_stage;    /* the command the next reply answers (counters) */
	enum stats_end end_reason;       /* why the session ends, once end_set */
	bool end_set;
};

/* A 4xx/5xx reply that counts as the client's error: 452 4.5.3 (too many recipients, RFC 5321
 * 4.5.3.1.10) is flow control, the client sends the rest in another transaction. */
static inline bool session_code_is_error(int code, const char *enhanced)
{
	return code >= 400 && !(enhanced != NULL && strcmp(enhanced, "4.5.3") == 0);
}

/* smtp_session.c */
void session_reply(struct smtp_session *s, int code, const char *enhanced, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
/* session_reply() puts its reply behind the RCPT replies still owed, if any (one reply per
 * command, in order). session_reply_text() writes at once and does not count a 4xx/5xx against
 * max_errors: for the RCPT queue itself, whose replies are counted when decided. */
void session_reply_text(struct smtp_session *s, int code, const char *enhanced, const char *text);
/* Start (again) the deadline for the next command line. */
void session_arm_command_deadline(struct smtp_session *s);
void session_write(struct smtp_session *s, const char *text, size_t len);
void session_close(struct smtp_session *s);       /* after the queued replies are written */
/* Why the session ends (counters); the first reason given sticks. */
void session_end_reason(struct smtp_session *s, enum stats_end why);
/* Octets the client has sent that the session has not processed (read or still in the kernel). */
size_t session_input_pending(struct smtp_session *s);
void session_set_read_timeout(struct smtp_session *s, uint64_t ms);
/* One log line per decision. extra: more key=value pairs (verdict, source, latency), or NULL. */
void session_log_decision(struct smtp_session *s, const char *what, const struct smtp_address *addr,
			  int code, const char *enhanced, const char *reason, const char *extra);
void session_tx_reset(struct smtp_session *s);
/* Header fields (each ending in CRLF) for the current transaction's message, after backstop's
 * Received: a repeat of fields already there is skipped, past SESSION_TX_HEADERS_MAX dropped. */
void session_tx_add_headers(struct smtp_session *s, const char *headers);
/* A decision request for stage with what the session knows (client, HELO, TLS, sender, counts). */
void session_request(const struct smtp_session *s, enum engine_stage stage, struct engine_request *req);
void session_start_tls(struct smtp_session *s);
/* The banner (after greet_delay, if set), and the CONNECT stage asked. */
void session_greet(struct smtp_session *s);
/* Stop processing input until session_resume() with the same reason (an asynchronous step is
 * under way); a resume for another reason than the current pause does nothing. */
void session_pause(struct smtp_session *s, enum session_wait why);
void session_resume(struct smtp_session *s, enum session_wait why);
struct relay *session_relay(struct smtp_session *s); /* created on first use */

/* smtp_rcpt.c: a recipient that passed parsing and the limits: the engine's RCPT stage decides
 * (relay control, verification), then the backend. */
void session_rcpt_decide(struct smtp_session *s, const struct smtp_rcpt_cmd *rc);
/* A RCPT refused before any lookup (syntax, policy, limits): answered now, or after the
 * recipients still being decided if there are any. to may be NULL. */
void session_rcpt_refuse(struct smtp_session *s, const struct smtp_address *to, int code,
			 const char *enhanced, const char *text, const char *extra);
size_t session_rcpt_queued(const struct smtp_session *s);
/* A reply produced while RCPT replies are owed: queued behind them (true), or false if none
 * are owed and the caller writes it now. Not counted against max_errors here. */
bool session_rcpt_defer_reply(struct smtp_session *s, int code, const char *enhanced, const char *text);
/* Recipients accepted or still being decided (refusals not counted), for max_recipients. */
size_t session_rcpt_live(const struct smtp_session *s);
/* Pipelined RCPTs waiting beyond this stop the reading of more input until some are answered. */
#define SESSION_RCPT_QUEUE_MAX 128
void session_rcpt_cancel(struct smtp_session *s); /* session ending: drop the queue */

/* smtp_decide.c: the engine's stages but RCPT. */
/* The command being run goes on with the decision (d and ctx valid only during the call). */
typedef void (*session_decided_fn)(struct smtp_session *s, const struct engine_decision *d, const void *ctx);
/* Does any check run at stage? Not asking then costs nothing (no loop turn). */
bool session_asks(const struct smtp_session *s, enum engine_stage stage);
/* Ask the engine about req for the command being run: the session pauses (SESSION_WAIT_DECISION;
 * commands pipelined behind wait in the input buffer), then done(s, d, copy of ctxlen octets of
 * ctx) answers the command, then the session resumes unless done paused it for another step. */
void session_decide(struct smtp_session *s, const struct engine_request *req, session_decided_fn done,
		    const void *ctx, size_t ctxlen);
/* The same in two steps, for a request that points into ctx (the HELO name, the sender): begin
 * returns the copy of ctx that done will get (owned by the pending decision), ask starts it. */
void *session_decide_begin(struct smtp_session *s, session_decided_fn done, const void *ctx, size_t ctxlen);
void session_decide_ask(struct smtp_session *s, const struct engine_request *req);
/* A refusal (REJECT or DEFER): answer the command with the decision's code and text, and log
 * it (what, addr: as session_log_decision). */
bool session_decision_refuses(const struct engine_decision *d);
void session_decision_refuse(struct smtp_session *s, const char *what, const struct smtp_address *addr,
			     const struct engine_decision *d, const char *extra);
/* The reply session_decision_reply() gives (a code out of its class is made 451 / 550). */
void session_decision_code(const struct engine_decision *d, int *code, const char **enh, const char **text);
/* The decision's key=value pairs for its log line (result, check, deadline, the checks' fields). */
void session_decision_extra(const struct engine_decision *d, char *buf, size_t len);
/* At accept, when a check runs there: ask the BANNER stage; the banner waits for it. A refusal
 * is the session's only reply (421, or 554 for a rejection) and the session ends; otherwise
 * session_greet(). */
void session_decide_banner(struct smtp_session *s);
/* At accept: ask the CONNECT stage (the banner is not held). */
void session_decide_connect(struct smtp_session *s);
/* A RCPT refused by what CONNECT decided (answered here: true). */
bool session_decide_connect_refuses(struct smtp_session *s, const struct smtp_address *to);
/* Session ending or shutting down: no decision callback after this. */
void session_decide_cancel(struct smtp_session *s);

/* smtp_commands.c */
void session_command(struct smtp_session *s, const char *line, size_t len);
/* The client sent n octets behind DATA before backstop's 354 (RFC 2920 3.1: DATA ends a group):
 * they are discarded, the session answers 554 and ends. */
void session_data_pipelined(struct smtp_session *s, size_t n);

/* smtp_data_phase.c */
void session_data_command(struct smtp_session *s); /* DATA accepted by backstop: ask the backend */
/* Consume message content from in; returns false when more input is needed. */
bool session_data_input(struct smtp_session *s, struct evbuffer *in);

#endif
