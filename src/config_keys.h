/* config_keys.h - private to the config module: the declarative key table shared by the loader
 * (config_load.c), the documentation writer (config_describe.c) and config.c. */
#ifndef BACKSTOP_CONFIG_KEYS_H
#define BACKSTOP_CONFIG_KEYS_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "config_check.h" /* the checks named in the table */

enum cfg_section { CFG_SEC_GATEWAY, CFG_SEC_DOMAIN, CFG_SEC_LDAP };

enum cfg_type {
	CFG_T_STR,       /* char *; heap copy */
	CFG_T_BUF,       /* char[size] */
	CFG_T_UINT,      /* unsigned integer field of 1, 4 or 8 bytes */
	CFG_T_SIZE,      /* uint64_t octets: 50M */
	CFG_T_DURATION,  /* uint64_t milliseconds: 5m, 1h30m */
	CFG_T_BOOL,      /* bool: yes / no */
	CFG_T_ENUM,      /* index into enums[], stored in a bool or an int-sized field */
	CFG_T_HOSTPORTS, /* struct bs_hostport_list */
	CFG_T_STRLIST,   /* struct bs_strlist, split on white space */
	CFG_T_LISTENERS, /* struct bs_listener_list: host:port or unix:/path, commas or spaces */
};

/* Extra check on a parsed string value; 0 or -1 with *why. */
typedef int (*cfg_check_fn)(const char *value, const char **why);

struct cfg_key {
	enum cfg_section section;
	const char *name;
	enum cfg_type type;
	const char *def;            /* default, parsed like a value; NULL: unset or computed */
	const char *def_doc;        /* default as documented when def is NULL (computed); or NULL */
	uint64_t min, max;          /* numbers (UINT, SIZE, DURATION) */
	const char *const *enums;   /* ENUM: NULL-terminated values; UINT: enums[0] is the word for 0 */
	size_t offset, size;        /* field in struct bs_config / bs_domain / bs_ldap */
	cfg_check_fn check;         /* STR, BUF, STRLIST items; NULL: none */
	const char *arg;            /* placeholder for documentation: "host:port,..." */
	const char *help;
};

/* Longest value: inih (Debian's build) hands over lines of at most 198 characters. */
#define CFG_VALUE_MAX 256

extern const struct cfg_key config_keys[];
extern const size_t config_nkeys;

const char *config_section_name(enum cfg_section s);

/* Write v (a number of k's type) as it would be written in the file: 50M, 1h30m, 100. */
void config_key_format(const struct cfg_key *k, uint64_t v, char *buf, size_t bufsz);
/* Write k's enum values separated by sep: "a, b, c". */
void config_key_values(const struct cfg_key *k, const char *sep, char *buf, size_t bufsz);

void config_strlist_free(struct bs_strlist *l);

/* Free a config in any state (also a half-built one). */
void config_free(struct bs_config *cfg);

#endif
