/* config_load.h - private to the config module: the loader's state, shared by config_load.c
 * (reading and parsing) and config_validate.c (checks across keys and sections). */
#ifndef BACKSTOP_CONFIG_LOAD_H
#define BACKSTOP_CONFIG_LOAD_H

#include "config.h"
#include "config_keys.h"

enum cfg_cur { CUR_NONE, CUR_BAD, CUR_GATEWAY, CUR_DOMAIN, CUR_LDAP };

struct cfg_loader {
	const char *path;
	struct config_errors *errs;
	struct bs_config *cfg;
	const char *buf;        /* the whole file */
	size_t len, pos;
	unsigned line;          /* line being handled */
	enum cfg_cur cur;       /* section of the current line */
	size_t cur_idx;         /* its index in cfg->domains / cfg->ldaps */
	unsigned gateway_line;  /* first [gateway] header, 0 if none */
	unsigned *gw_seen;      /* per key: line where [gateway] set it, 0 if not set */
	unsigned *dom_seen;     /* ndomains * config_nkeys, the same for each [domain] */
	unsigned *ldap_seen;    /* nldaps * config_nkeys */
};

/* Append "PATH:LINE: message" to L->errs. */
void config_error(struct cfg_loader *L, unsigned line, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Line where key `name` of a section was set, 0 if it kept its default. seen is L->gw_seen, or
 * a row of L->dom_seen / L->ldap_seen. */
unsigned config_seen_line(const unsigned *seen, enum cfg_section sec, const char *name);

/* Fill a zeroed section object (struct bs_config, bs_domain or bs_ldap) with the defaults of
 * its keys, as a fresh section gets them (config_dump.c compares with them). */
void config_section_defaults(enum cfg_section sec, void *obj);

/* After parsing: computed defaults, inherited values, checks across keys and sections; sorts
 * the domains. Errors go to L->errs. */
void config_validate(struct cfg_loader *L);

#endif
