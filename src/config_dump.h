/* config_dump.h - `backstop config`: a loaded configuration written back as a file, every key of
 * config_keys[] with its effective value (defaults filled in), or only the keys whose value
 * differs from their default (-n, as postconf -n). The output loads as the same configuration. */
#ifndef BACKSTOP_CONFIG_DUMP_H
#define BACKSTOP_CONFIG_DUMP_H

#include <stdbool.h>
#include <stdio.h>

#include "config.h"

/* Write cfg's [gateway], then each [ldap NAME] and [domain NAME] section. non_default: only the
 * keys that differ from their default (a key whose default is computed, such as hostname: when it
 * is set in the file; a domain's TTLs: when they differ from [gateway]'s). */
void config_dump(FILE *out, const struct bs_config *cfg, bool non_default);

#endif
