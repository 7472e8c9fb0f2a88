/* relay.h - in-line delivery: the backend side of one client session. The first recipient of a
 * transaction opens (or reuses) a backend SMTP session to the recipient domain's `deliver`
 * targets; each client RCPT is forwarded and the backend's reply becomes the client's; the body
 * is streamed; the backend's reply to the final dot is the client's. backstop never says 250 for
 * a message a backend has not accepted, and never originates a message of its own.
 *
 * One operation is outstanding at a time (the session waits for each answer). Answers always
 * arrive from the event loop, never from inside the relay_* call that asked. */
#ifndef BACKSTOP_RELAY_H
#define BACKSTOP_RELAY_H

#include <stdbool.h>
#include <stddef.h>

#include <event2/event.h>
#include <openssl/ssl.h>

#include "backend_health.h"
#include "backend_slots.h"
#include "config.h"
#include "dns.h"
#include "relay_pool.h"
#include "smtp_client.h"
#include "smtp_parse.h"

struct relay_env {
	struct event_base *base;
	const struct bs_config *cfg;
	SSL_CTX *tls_client;           /* opportunistic TLS (no verification) */
	SSL_CTX *const *domain_tls;    /* per cfg->domains[i]: verifying context for must + CA, or NULL */
	struct backend_health *health;
	struct dns_resolver *dns;      /* the worker's resolver, for deliver targets given by name */
	struct relay_pool *pool;       /* the worker's idle backend sessions (NULL: no reuse) */
	struct backend_slots *slots;   /* connections per backend, all workers (NULL: no cap) */
	unsigned *rr_counter;          /* worker-local, for deliver_policy = round-robin */
};

/* What the client is told; text is already sanitised. */
struct relay_answer {
	int code;
	char enhanced[16];
	char text[SMTP_REPLY_TEXT_MAX + 1];
	const char *backend;           /* "host:port" that answered, or NULL */
	/* relay_data_end() only: the backend had the whole message, final dot included, and never
	 * answered (timeout, closed, reset, out of step). It may have taken the message, so the
	 * client must get no reply at all (a 4xx would make its retry a certain duplicate); text
	 * says why. The backend link is already dropped. */
	bool unknown;
};

typedef void (*relay_cb)(void *arg, const struct relay_answer *ans);

struct relay;

struct relay *relay_new(const struct relay_env *env);
/* The client session ended: an idle usable backend session goes to the pool (for
 * backend_idle_timeout), anything else is closed (QUIT when usable). No callback afterwards. */
void relay_free(struct relay *r);

/* Forward one recipient (already accepted by backstop's own checks). Opens the backend session
 * and sends MAIL first when the transaction has none. Answers: the backend's RCPT reply (or its
 * MAIL reply if it refused the sender), 452 4.5.3 if dom routes to another backend than the
 * transaction's, 451 4.4.1 if no backend of dom can be reached, 451 4.4.2 if the backend
 * connection failed. */
void relay_rcpt(struct relay *r, const struct bs_domain *dom, const struct smtp_address *from,
		const struct smtp_mail_params *mp, const struct smtp_address *to,
		const struct smtp_rcpt_params *rp, relay_cb cb, void *arg);

/* DATA towards the backend: answers 354 when content may follow, or the refusal. */
void relay_data_begin(struct relay *r, relay_cb cb, void *arg);
/* Message content (un-stuffed, CRLF lines); the relay stuffs. */
void relay_data_write(struct relay *r, const char *buf, size_t len);
/* End of content: answers the backend's final reply; 451 4.4.2 if the link failed before the
 * final dot had left; .unknown if it failed after. */
void relay_data_end(struct relay *r, relay_cb cb, void *arg);
/* The message was refused by backstop mid-content: drop the backend connection without the
 * final dot, so the backend discards what it got. */
void relay_data_abort(struct relay *r);
/* The client's transaction ended without DATA (RSET, or refusal): reset the backend's. */
void relay_tx_reset(struct relay *r);

/* Backpressure while streaming. */
size_t relay_pending(const struct relay *r);
void relay_set_drain_cb(struct relay *r, size_t lowmark, void (*cb)(void *arg), void *arg);
/* Still able to carry the current transaction? */
bool relay_usable(const struct relay *r);
/* "host:port" of the current backend, for logs; NULL if none. */
const char *relay_backend(const struct relay *r);

#endif
