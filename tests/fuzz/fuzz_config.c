/* fuzz_config.c - libFuzzer target: config_load_buffer() on arbitrary bytes must never crash,
 * leak or read out of bounds, and a config that loads must be usable. */
#include <stddef.h>
#include <stdint.h>

#include "config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct config_errors errs;
	struct bs_config *cfg = config_load_buffer("fuzz.conf", (const char *)data, size, &errs);

	if (cfg) {
		for (size_t i = 0; i < cfg->ndomains; i++)
			if (config_find_domain(cfg, cfg->domains[i].name) != &cfg->domains[i])
				__builtin_trap();
		config_unref(cfg);
	}
	config_errors_free(&errs);
	return 0;
}
