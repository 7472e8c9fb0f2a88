/* redis_conn.h - one asynchronous Redis connection on one event loop: plain TCP or TLS (a libevent
 * bufferevent), RESP through hiredis's reader and command formatter, AUTH and SELECT on connect,
 * the master found through Sentinel when the target names one. Commands are pipelined and
 * answered in order; none is queued while the connection is down (the caller falls back at once),
 * and a reconnection is tried on the next command once the backoff (100 ms doubling to 5 s) has
 * passed; commands asked while connecting are sent once it is ready. An idle command connection registers no event, so a loop with nothing else to do ends.
 * A subscriber connection keeps reading and reconnects by itself. One thread: the loop's. */
#ifndef BACKSTOP_REDIS_CONN_H
#define BACKSTOP_REDIS_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include <event2/event.h>
#include <hiredis/hiredis.h>
#include <openssl/ssl.h>

#define REDIS_HOST_MAX 8

struct redis_endpoint {
	char name[256];                 /* as written (TLS server name) */
	struct sockaddr_storage sa;
	socklen_t salen;
};

/* Where and how to connect; read-only once made, shared by every connection of a store. */
struct redis_target {
	bool tls;
	SSL_CTX *ssl_ctx;               /* tls: verifies the server (cache_redis_tls_ca or system CAs) */
	struct redis_endpoint hosts[REDIS_HOST_MAX]; /* the server, or the sentinels */
	size_t nhosts;
	char master[128];               /* "": no Sentinel; else the master's name */
	char *password;                 /* NULL: no AUTH */
	unsigned db;
	uint64_t timeout_ms;            /* connecting, and waiting for a reply */
};

/* r is NULL when the command failed (connection lost, timeout); an error reply is a reply. r is
 * valid only during the call. */
typedef void (*redis_reply_cb)(void *arg, const redisReply *r);
/* The connection became usable (up) or was lost (!up). */
typedef void (*redis_state_cb)(void *arg, bool up);

struct redis_conn;
struct redis_cmd;

struct redis_conn *redis_conn_new(struct event_base *base, const struct redis_target *t, redis_state_cb state_cb,
				  void *state_arg);
/* Pending commands are answered NULL (from inside this call). */
void redis_conn_free(struct redis_conn *c);
bool redis_conn_ready(const struct redis_conn *c);
/* Down and not trying (the last attempt failed, the backoff runs). */
bool redis_conn_failed(const struct redis_conn *c);
/* Start connecting if down and the backoff has passed. */
void redis_conn_kick(struct redis_conn *c);
/* Forget the backoff (another connection to the same Redis just succeeded). */
void redis_conn_retry_now(struct redis_conn *c);
/* Send a command (argv/argvlen as for redisCommandArgv); while connecting, once connected. NULL,
 * and no callback, when the connection is down (a reconnection is started if due, and the
 * command waits for it) or too many are waiting. */
struct redis_cmd *redis_conn_command(struct redis_conn *c, redis_reply_cb cb, void *arg, int argc,
				     const char **argv, const size_t *argvlen);
/* The same with NUL-terminated arguments. */
struct redis_cmd *redis_conn_commandv(struct redis_conn *c, redis_reply_cb cb, void *arg, int argc,
				      const char **argv);
/* The caller no longer wants the reply (its callback will not be called). */
void redis_cmd_cancel(struct redis_cmd *cmd);
/* Make c a subscriber of channel: every message's payload goes to cb; (re)subscribes on each
 * connection and reconnects by itself. */
void redis_conn_subscribe(struct redis_conn *c, const char *channel, void (*cb)(void *arg, const char *msg, size_t len),
			  void *arg);

/* Parse "HOST:PORT" (HOST a name, an IPv4 address or [IPv6]; PORT defaults to default_port) and
 * resolve it (blocking: at start-up only). 0, or -1 with why. */
int redis_endpoint_resolve(const char *text, size_t len, const char *default_port, struct redis_endpoint *ep,
			   char *why, size_t whysz);

#endif
