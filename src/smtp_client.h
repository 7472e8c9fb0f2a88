/* smtp_client.h - asynchronous outbound SMTP client on a libevent loop. Used by in-line
 * delivery (relay.c) to talk to the backends and by recipient callouts (rcpt_callout.c).
 * It speaks ESMTP with PIPELINING, upgrades with STARTTLS as asked, streams DATA with
 * dot-stuffing and backpressure, and turns every failure (connect, timeout, closed connection,
 * garbage reply) into a reply with code 0 so callers have one path for errors. Replies are
 * matched to commands by position, so a server that sends more than it owes (a line after its
 * greeting, a second reply to one command) fails the connection at once: "out of step".
 *
 * Callbacks are never called from inside an smtp_client_* call; always from the event loop.
 * A callback may free the client. After smtp_client_free() no callback is called. */
#ifndef BACKSTOP_SMTP_CLIENT_H
#define BACKSTOP_SMTP_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include <event2/event.h>
#include <openssl/ssl.h>

#include "config.h"

#define SMTP_REPLY_TEXT_MAX 400

struct smtp_reply {
	int code;          /* 200..599; 0 = no valid reply (see text for why: "connection refused",
			    * "timeout after MAIL", "malformed reply", ...) */
	char enhanced[16]; /* "2.1.5" when the server sent one (RFC 3463), else "" */
	/* reply text without code and enhanced code; lines of a multi-line reply joined with
	 * "; ". Sanitised: printable ASCII only (others become '?'), at most SMTP_REPLY_TEXT_MAX */
	char text[SMTP_REPLY_TEXT_MAX + 1];
};

typedef void (*smtp_client_reply_cb)(void *arg, const struct smtp_reply *reply);

struct smtp_client_opts {
	const char *helo_name;           /* our name in EHLO/HELO */
	enum deliver_tls_mode tls;       /* may: STARTTLS if offered; must: fail without it; none */
	SSL_CTX *tls_ctx;                /* client context (NULL: TLS impossible, like none) */
	const char *tls_server_name;     /* SNI and, with verification, the expected name; may be NULL */
	bool tls_verify;                 /* verify the peer certificate (ctx holds the CA) */
	uint64_t connect_timeout_ms;     /* TCP connect + banner */
	uint64_t command_timeout_ms;     /* each reply */
	uint64_t data_timeout_ms;        /* reply to the final dot */
};

struct smtp_client;

/* Connect to sa, read the banner, EHLO (HELO if EHLO is refused with 5xx), STARTTLS as opts
 * ask and EHLO again. ready_cb gets the last reply: the 250 of EHLO on success, otherwise the
 * failing reply (a 4xx/5xx banner or EHLO) or code 0 (connect failure, timeout, TLS failure,
 * "STARTTLS required but not offered"). On failure the caller frees the client. */
struct smtp_client *smtp_client_new(struct event_base *base, const struct sockaddr *sa, socklen_t salen,
				    const struct smtp_client_opts *opts, smtp_client_reply_cb ready_cb, void *arg);

/* After ready: did the server's EHLO advertise keyword ("SIZE", "PIPELINING", "DSN", "8BITMIME",
 * "SMTPUTF8", "STARTTLS", ...)? Case-insensitive. */
bool smtp_client_has_ext(const struct smtp_client *c, const char *keyword);

/* After ready: the SIZE the server advertised (RFC 1870), or 0 if it advertised none or no
 * limit. */
uint64_t smtp_client_max_size(const struct smtp_client *c);

/* Protocol and cipher of the TLS session ("TLSv1.3", "TLS_AES_256_GCM_SHA384"), or NULL/NULL. */
void smtp_client_tls_info(const struct smtp_client *c, const char **version, const char **cipher);

/* Queue a command line (without CRLF; at most SMTP_PARAM_LINE_MAX octets: a MAIL or RCPT with
 * the parameters RFC 3461 allows, see smtp_parse.h). Its reply goes to cb, in order.
 * With PIPELINING, commands queued in the same loop iteration leave in one write; without it
 * each waits for the previous reply. After a failure every queued and later command gets a
 * code-0 reply (from the event loop). */
void smtp_client_command(struct smtp_client *c, const char *line, smtp_client_reply_cb cb, void *arg);

/* Message content after a 354: raw octets with CRLF line endings, NOT dot-stuffed (the client
 * stuffs). data_end sends the final <CRLF>.<CRLF> (adding the CRLF only if the content did not
 * end with one) and delivers the final reply to cb, with opts->data_timeout_ms. */
void smtp_client_data_write(struct smtp_client *c, const void *buf, size_t len);
void smtp_client_data_end(struct smtp_client *c, smtp_client_reply_cb cb, void *arg);

/* Backpressure: octets queued towards the server and not yet written. drain_cb is called once
 * each time the queue falls to lowmark or below after having been above it. */
size_t smtp_client_pending(const struct smtp_client *c);
void smtp_client_set_drain_cb(struct smtp_client *c, size_t lowmark, void (*drain_cb)(void *arg), void *arg);

/* Is the connection still usable (ready, no failure, not mid-DATA)? */
bool smtp_client_usable(const struct smtp_client *c);

/* Has the connection failed (closed, timed out, garbage, 421)? Unlike usable, false mid-DATA
 * while the stream is healthy. */
bool smtp_client_failed(const struct smtp_client *c);

/* From a reply callback: has more input arrived behind this reply (buffered, or waiting in the
 * kernel on a plain connection)? A caller that has nothing else outstanding learns the server
 * sent more replies than it was asked for. */
bool smtp_client_input_pending(const struct smtp_client *c);

/* Did the server greet with 2xx? After a failed ready_cb, false means the banner itself was
 * refused (a 421 there is how a busy server says "too many connections"). */
bool smtp_client_greeted(const struct smtp_client *c);

/* After a code-0 reply to smtp_client_data_end(): had the final dot left before the failure
 * (handed to the kernel, nothing of ours still queued)? Then the server may have taken the
 * message and the outcome is unknown; false when the failure came first (the server cannot
 * have a complete message). */
bool smtp_client_dot_sent(const struct smtp_client *c);

/* Optional dialogue trace, for `backstop probe`: dir is '>' (sent) or '<' (received); one call
 * per line, without line ending. */
void smtp_client_set_trace(struct smtp_client *c, void (*trace)(void *arg, char dir, const char *line, size_t len), void *arg);

/* Close the connection (sending QUIT first when send_quit and the connection is usable; no
 * reply is awaited) and free everything. No callback is called afterwards. */
void smtp_client_free(struct smtp_client *c, bool send_quit);

#endif
