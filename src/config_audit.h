/* config_audit.h - check-config's checks against the machine it runs on (config_audit.c). */
#ifndef BACKSTOP_CONFIG_AUDIT_H
#define BACKSTOP_CONFIG_AUDIT_H

#include <stdio.h>

#include "config.h"

/* Print "FILE:LINE: message" for each error and "FILE:LINE: warning: message" for each warning
 * on out; returns the number of errors and sets *warnings. May block (DNS, bounded; NSS): for
 * the command line only. */
int config_audit(const struct bs_config *cfg, FILE *out, unsigned *warnings);

#endif
