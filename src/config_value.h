/* config_value.h - parsers for typed configuration values: sizes (50M), durations (5m, 300s,
 * 1h30m), booleans, unsigned integers, enums and host:port lists. Pure; unit-tested. Each returns
 * 0 or -1 and, on -1, points *why at a static explanation for the FILE:LINE message. */
#ifndef BACKSTOP_CONFIG_VALUE_H
#define BACKSTOP_CONFIG_VALUE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"

int cfgval_uint(const char *s, uint64_t *out, const char **why);
int cfgval_size(const char *s, uint64_t *out, const char **why);      /* bytes; K M G suffixes (1024) */
int cfgval_duration(const char *s, uint64_t *out_ms, const char **why); /* ms; ms s m h d suffixes, bare = s */
int cfgval_bool(const char *s, bool *out, const char **why);          /* yes/no true/false on/off 1/0 */
/* values: NULL-terminated list; *out = index */
int cfgval_enum(const char *s, const char *const *values, int *out, const char **why);
/* "a:1, [::1]:2" separated by commas and/or spaces; appends to list (heap) */
int cfgval_hostport_list(const char *s, struct bs_hostport_list *list, const char **why);
void cfgval_hostport_list_free(struct bs_hostport_list *list);
/* "127.0.0.1:10040, unix:/var/spool/postfix/private/x": host:port as above, or unix: and an
 * absolute path that fits a socket address; the empty string is the empty list. Appends. */
int cfgval_listener_list(const char *s, struct bs_listener_list *list, const char **why);
void cfgval_listener_list_free(struct bs_listener_list *list);

/* The reverse, for messages and documentation: the largest exact unit (50M, 512, 1G) and the
 * units that add up to the duration (1h30m, 250ms, 0s). Always NUL-terminate buf. */
void cfgval_format_size(uint64_t v, char *buf, size_t bufsz);
void cfgval_format_duration(uint64_t ms, char *buf, size_t bufsz);

#endif
