/* runtime.h - one generation of everything built from a configuration: the config itself and
 * the TLS contexts made from it. Sessions hold a reference to the generation they started with;
 * SIGHUP builds a new generation and swaps it in, and the old one is freed when its last
 * session ends. */
#ifndef BACKSTOP_RUNTIME_H
#define BACKSTOP_RUNTIME_H

#include <stdatomic.h>

#include <openssl/ssl.h>

#include "config.h"

struct bs_runtime {
	atomic_int refs;
	struct bs_config *cfg;  /* owned (one reference) */
	SSL_CTX *tls_server;    /* STARTTLS towards clients; NULL when not configured */
	SSL_CTX *tls_client;    /* towards backends without a CA (opportunistic) */
	SSL_CTX **domain_tls;   /* per cfg->domains[i]: verifying context (deliver_tls_ca), or NULL */
};

/* Build a generation from a loaded config (takes over the caller's config reference). On
 * failure returns NULL and writes why (e.g. the certificate does not load). */
struct bs_runtime *runtime_new(struct bs_config *cfg, char *why, size_t whysz);
struct bs_runtime *runtime_ref(struct bs_runtime *rt);
void runtime_unref(struct bs_runtime *rt);

#endif
