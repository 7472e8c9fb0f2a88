/* runtime.c - building and releasing a configuration generation (see runtime.h). */
#include "runtime.h"

#include <stdio.h>
#include <stdlib.h>

#include "tls.h"
#include "util.h"

struct bs_runtime *runtime_new(struct bs_config *cfg, char *why, size_t whysz)
{
	const char *err = NULL;
	struct bs_runtime *rt = xcalloc(1, sizeof *rt);

	atomic_init(&rt->refs, 1);
	rt->cfg = cfg;
	rt->tls_server = tls_server_ctx_new(cfg, &err);
	if (rt->tls_server == NULL && err != NULL) {
		snprintf(why, whysz, "%s: tls_cert/tls_key: %s", cfg->path, err);
		goto fail;
	}
	rt->tls_client = tls_client_ctx_new(NULL, &err);
	if (rt->tls_client == NULL) {
		snprintf(why, whysz, "TLS client context: %s", err);
		goto fail;
	}
	rt->domain_tls = xcalloc(cfg->ndomains, sizeof *rt->domain_tls);
	for (size_t i = 0; i < cfg->ndomains; i++) {
		const struct bs_domain *d = &cfg->domains[i];
		if (d->deliver_tls_ca == NULL)
			continue;
		rt->domain_tls[i] = tls_client_ctx_new(d->deliver_tls_ca, &err);
		if (rt->domain_tls[i] == NULL) {
			snprintf(why, whysz, "%s: [domain %s] deliver_tls_ca %s: %s", cfg->path, d->name,
				 d->deliver_tls_ca, err);
			goto fail;
		}
	}
	return rt;
fail:
	runtime_unref(rt);
	return NULL;
}

struct bs_runtime *runtime_ref(struct bs_runtime *rt)
{
	atomic_fetch_add(&rt->refs, 1);
	return rt;
}

void runtime_unref(struct bs_runtime *rt)
{
	if (rt == NULL || atomic_fetch_sub(&rt->refs, 1) != 1)
		return;
	SSL_CTX_free(rt->tls_server);
	SSL_CTX_free(rt->tls_client);
	for (size_t i = 0; rt->domain_tls && i < rt->cfg->ndomains; i++)
		SSL_CTX_free(rt->domain_tls[i]);
	free(rt->domain_tls);
	config_unref(rt->cfg);
	free(rt);
}
