/* tls.h - OpenSSL contexts: the server context for STARTTLS (certificate and key from the
 * config) and the client context for talking to backends. */
#ifndef BACKSTOP_TLS_H
#define BACKSTOP_TLS_H

#include <openssl/ssl.h>

#include "config.h"

/* Server context from cfg->tls_cert / tls_key; NULL (and *why) if they cannot be loaded.
 * Returns NULL with *why = NULL when TLS is not configured. */
SSL_CTX *tls_server_ctx_new(const struct bs_config *cfg, const char **why);

/* Client context; with ca_file, peer verification against it is enabled. NULL on error. */
SSL_CTX *tls_client_ctx_new(const char *ca_file, const char **why);

#endif
