/* callout_conn.h - private to the callout pool: one SMTP connection to the validation server
 * (resolve, connect, EHLO) and the batches it carries (MAIL, RCPT..., RSET), answered only once
 * RSET's reply shows the replies were in step with the commands (callout_match.c). */
#ifndef BACKSTOP_CALLOUT_CONN_H
#define BACKSTOP_CALLOUT_CONN_H

#include <stdbool.h>

#include <event2/event.h>

#include "callout_flight.h"
#include "callout_match.h"
#include "dns.h"
#include "smtp_client.h"

#define POOL_BATCH_MAX CALLOUT_MATCH_MAX /* RCPTs in one MAIL transaction (16) */

enum conn_state { CC_RESOLVING, CC_CONNECTING, CC_IDLE, CC_BUSY, CC_QUITTING };

struct cconn {
	struct callout_pool *p;
	enum conn_state st;
	struct smtp_client *client;
	struct dns_query *dq;
	struct event *idle;
	struct flight_list batch;
	unsigned rejects;          /* 5xx RCPT replies on this connection */
	bool used;                 /* has carried a batch: a drop may be the server's idle close */
	struct smtp_reply mail;    /* the reply to this batch's MAIL */
	struct callout_match match; /* this batch's replies, matched to its commands */
	struct dns_addrs addrs;    /* the server's addresses, tried in turn while connecting */
	size_t next_addr;
};

/* How many of the pool's slots hold a connection (any) or one in state only. */
unsigned callout_conn_count(const struct callout_pool *p, enum conn_state only, bool any);

/* Open a connection into the empty slot. */
void callout_conn_open(struct callout_pool *p, unsigned slot);

/* Free c and its slot, sending QUIT first when quit is set. */
void callout_conn_close(struct cconn *c, bool quit);

/* Send MAIL, up to a batch of RCPTs from the pool's queue, and RSET on the idle c. */
void callout_conn_start_batch(struct cconn *c);

/* Answer c's batch "shutting down" and close c (the pool is closing). */
void callout_conn_shutdown(struct cconn *c);

#endif
