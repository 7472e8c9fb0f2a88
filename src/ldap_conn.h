/* ldap_conn.h - connections to a directory, for one [ldap NAME] section.
 * ldap_conn: one LDAP session that connects on demand, trying the section's URIs in order
 * (StartTLS on ldap:// when starttls = yes, the CA file, simple bind with the password read
 * from bind_password_file), drops itself on loss and re-binds on the next use. Its calls block
 * (bounded by timeout_ms): use it directly only where no event loop runs (`backstop sync`).
 * ldap_conn_pool: `connections` threads, each owning one ldap_conn, that run jobs from a queue;
 * this is how event-loop code uses LDAP without ever blocking its loop (rcpt_ldap.c). */
#ifndef BACKSTOP_LDAP_CONN_H
#define BACKSTOP_LDAP_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <ldap.h>

#include "config.h"

/* The settings a connection needs, copied out of the config (which may be freed on reload),
 * with the bind password already read. Owned by whoever made it; immutable afterwards, so all
 * pool threads share one. */
struct ldap_conn_cfg {
	char *name;          /* section name, for messages */
	char **uris;
	size_t nuris;
	bool starttls;
	char *tls_ca;        /* NULL: the system's default CAs */
	char *bind_dn;       /* NULL: anonymous */
	char *password;      /* NULL when anonymous; wiped on free */
	char *base;
	uint64_t timeout_ms;
	unsigned connections;
};

/* Copy l's settings and read its password file (blocking; main thread). Returns NULL with a
 * sentence in why if the file is unreadable, empty with a bind_dn set, or a URI is unusable. */
struct ldap_conn_cfg *ldap_conn_cfg_new(const struct bs_ldap *l, char *why, size_t whysz);
void ldap_conn_cfg_free(struct ldap_conn_cfg *cfg);

struct ldap_conn;

/* A connection that is not connected yet (it connects on first use). cfg must outlive it. */
struct ldap_conn *ldap_conn_new(const struct ldap_conn_cfg *cfg);
void ldap_conn_free(struct ldap_conn *c);

/* Subtree search under cfg->base (blocking, at most about timeout_ms per attempt). Connects if
 * needed; a connection found dead (the server closed an idle connection) is re-opened and the
 * search tried once more. Returns the LDAP result code; *res (may be set even on error, free with
 * ldap_msgfree) holds entries and the final result. On failure err holds "URI: reason".
 * sctrls: server controls (paged results), or NULL. */
int ldap_conn_search(struct ldap_conn *c, const char *filter, char **attrs, int sizelimit,
		     LDAPControl **sctrls, LDAPMessage **res, char *err, size_t errsz);

/* Connect now unless connected (ldap_conn_search does it on demand). Returns an LDAP result
 * code, with err set on failure. */
int ldap_conn_connect(struct ldap_conn *c, char *err, size_t errsz);

/* The libldap handle of a connected connection (to parse results), NULL when not connected. */
LDAP *ldap_conn_handle(struct ldap_conn *c);

/* The URI currently connected to, or "" when not connected. */
const char *ldap_conn_uri(const struct ldap_conn *c);

/* --- the pool --- */

struct ldap_conn_job;
/* Runs on a pool thread with that thread's connection; c is NULL when the pool is stopping (the
 * job must then finish without LDAP). The job owns itself once run is called. */
typedef void (*ldap_conn_job_fn)(struct ldap_conn_job *job, struct ldap_conn *c);

struct ldap_conn_job {
	struct ldap_conn_job *next; /* queue link, owned by the pool */
	ldap_conn_job_fn run;
	uint64_t queued_ms;         /* set by submit (now_ms()) */
};

struct ldap_conn_pool;

/* Start cfg->connections threads (at least 1). cfg must outlive the pool. NULL with why if a
 * thread cannot be created. Main thread. */
struct ldap_conn_pool *ldap_conn_pool_start(const struct ldap_conn_cfg *cfg, char *why, size_t whysz);

/* Queue a job (any thread). The first idle thread runs it, in submission order. */
/* Lookups waiting for a connection beyond this are refused: a slow directory must not make the
 * queue grow with the RCPT rate. */
#define LDAP_CONN_QUEUE_MAX 5000

/* Queue a job; false (job untouched) when LDAP_CONN_QUEUE_MAX jobs already wait. */
bool ldap_conn_pool_submit(struct ldap_conn_pool *pool, struct ldap_conn_job *job);

/* Stop: jobs still queued are run with c == NULL, threads joined, connections closed. Waits at
 * most about timeout_ms for a search in progress. Main thread. */
void ldap_conn_pool_stop(struct ldap_conn_pool *pool);

#endif
