/* config_dump.c - write a loaded configuration back as backstop.conf text, key by key from
 * config_keys[]: each field formatted by its row's type, compared with the same field of a
 * section object filled with the defaults for -n. */
#include "config_dump.h"

#include <stdlib.h>
#include <string.h>

#include "config_keys.h"
#include "config_load.h"
#include "config_value.h"
#include "util.h"

#define DUMP_VALUE_MAX 4096

static uint64_t dump_uint(const void *field, size_t size)
{
	if (size == 1)
		return *(const uint8_t *)field;
	if (size == 4)
		return *(const uint32_t *)field;
	return *(const uint64_t *)field;
}

static void dump_hostport(const struct bs_hostport *hp, char *buf, size_t bufsz)
{
	bool v6 = strchr(hp->host, ':') != NULL;
	snprintf(buf, bufsz, "%s%s%s:%s", v6 ? "[" : "", hp->host, v6 ? "]" : "", hp->port);
}

/* Key k's value in the section object obj as it would be written in the file; false if unset. */
static bool dump_format(const struct cfg_key *k, const void *obj, char *buf, size_t bufsz)
{
	const char *field = (const char *)obj + k->offset;
	char one[SMTP_DOMAIN_MAX + 16 + BS_UNIX_PATH_MAX];

	buf[0] = '\0';
	switch (k->type) {
	case CFG_T_STR: {
		const char *v = *(char *const *)(const void *)field;
		if (v == NULL)
			return false;
		snprintf(buf, bufsz, "%s", v);
		return true;
	}
	case CFG_T_BUF:
		snprintf(buf, bufsz, "%s", field);
		return true;
	case CFG_T_UINT:
	case CFG_T_SIZE:
	case CFG_T_DURATION:
		config_key_format(k, dump_uint(field, k->size), buf, bufsz);
		return true;
	case CFG_T_BOOL:
		snprintf(buf, bufsz, "%s", dump_uint(field, k->size) ? "yes" : "no");
		return true;
	case CFG_T_ENUM:
		snprintf(buf, bufsz, "%s", k->enums[dump_uint(field, k->size)]);
		return true;
	case CFG_T_HOSTPORTS: {
		const struct bs_hostport_list *l = (const void *)field;
		for (size_t i = 0; i < l->n; i++) {
			dump_hostport(&l->items[i], one, sizeof one);
			strbuf_append(buf, bufsz, i ? ", " : "");
			strbuf_append(buf, bufsz, one);
		}
		return true;
	}
	case CFG_T_STRLIST: {
		const struct bs_strlist *l = (const void *)field;
		for (size_t i = 0; i < l->n; i++) {
			strbuf_append(buf, bufsz, i ? " " : "");
			strbuf_append(buf, bufsz, l->items[i]);
		}
		return true;
	}
	case CFG_T_LISTENERS: {
		const struct bs_listener_list *l = (const void *)field;
		for (size_t i = 0; i < l->n; i++) {
			if (l->items[i].is_unix)
				snprintf(one, sizeof one, "unix:%s", l->items[i].path);
			else
				dump_hostport(&l->items[i].inet, one, sizeof one);
			strbuf_append(buf, bufsz, i ? ", " : "");
			strbuf_append(buf, bufsz, one);
		}
		return true;
	}
	}
	return false;
}

/* Does key k of obj differ from its default? defaults: the same section with the table's defaults. */
static bool dump_differs(const struct bs_config *cfg, enum cfg_section sec, const struct cfg_key *k,
			 const void *obj, const void *defaults)
{
	char *v = xmalloc(DUMP_VALUE_MAX), *d = xmalloc(DUMP_VALUE_MAX);
	bool set = dump_format(k, obj, v, DUMP_VALUE_MAX), differs;

	if (k->def != NULL) {
		dump_format(k, defaults, d, DUMP_VALUE_MAX);
		differs = strcmp(v, d) != 0;
	} else if (sec == CFG_SEC_GATEWAY) { /* computed (hostname, postmaster_domain) or unset */
		differs = config_gateway_line(cfg, k->name) != 0;
	} else if (k->def_doc && strncmp(k->def_doc, "[gateway] ", 10) == 0) { /* inherited */
		size_t i;
		for (i = 0; i < config_nkeys; i++)
			if (config_keys[i].section == CFG_SEC_GATEWAY && strcmp(config_keys[i].name, k->def_doc + 10) == 0)
				break;
		differs = i == config_nkeys || !dump_format(&config_keys[i], cfg, d, DUMP_VALUE_MAX) || strcmp(v, d) != 0;
	} else { /* unset by default, or required */
		differs = set;
	}
	free(v);
	free(d);
	return differs;
}

static void dump_section(FILE *out, const struct bs_config *cfg, enum cfg_section sec, const void *obj,
			 const void *defaults, bool non_default)
{
	char *v = xmalloc(DUMP_VALUE_MAX);

	for (size_t i = 0; i < config_nkeys; i++) {
		const struct cfg_key *k = &config_keys[i];
		if (k->section != sec || (non_default && !dump_differs(cfg, sec, k, obj, defaults)))
			continue;
		if (dump_format(k, obj, v, DUMP_VALUE_MAX))
			fprintf(out, "%s = %s\n", k->name, v);
		else if (k->def_doc == NULL || strcmp(k->def_doc, "unset") == 0)
			fprintf(out, "# %s is unset\n", k->name);
		else
			fprintf(out, "# %s is unset (%s)\n", k->name, k->def_doc);
	}
	free(v);
}

void config_dump(FILE *out, const struct bs_config *cfg, bool non_default)
{
	struct bs_config *defaults = xcalloc(1, sizeof *defaults);

	/* one object of each section with the defaults (config_free frees it whole) */
	atomic_init(&defaults->refs, 1);
	defaults->domains = xcalloc(1, sizeof *defaults->domains);
	defaults->ndomains = 1;
	defaults->ldaps = xcalloc(1, sizeof *defaults->ldaps);
	defaults->nldaps = 1;
	config_section_defaults(CFG_SEC_GATEWAY, defaults);
	config_section_defaults(CFG_SEC_DOMAIN, &defaults->domains[0]);
	config_section_defaults(CFG_SEC_LDAP, &defaults->ldaps[0]);

	fprintf(out, "# backstop config%s: %s\n[gateway]\n", non_default ? " -n" : "", cfg->path);
	dump_section(out, cfg, CFG_SEC_GATEWAY, cfg, defaults, non_default);
	for (size_t i = 0; i < cfg->nldaps; i++) {
		fprintf(out, "\n[ldap %s]\n", cfg->ldaps[i].name);
		dump_section(out, cfg, CFG_SEC_LDAP, &cfg->ldaps[i], &defaults->ldaps[0], non_default);
	}
	for (size_t i = 0; i < cfg->ndomains; i++) {
		fprintf(out, "\n[domain %s]\n", cfg->domains[i].name);
		dump_section(out, cfg, CFG_SEC_DOMAIN, &cfg->domains[i], &defaults->domains[0], non_default);
	}
	config_free(defaults);
}
