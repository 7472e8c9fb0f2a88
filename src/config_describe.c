/* config_describe.c - document every key of config_keys[]: plain text for `check-config`-style
 * help, or mdoc for the option list of backstop.conf(5) (man/gen_conf_man.c puts it there). */
#include <string.h>

#include "config_keys.h"

/* Documented default of k: its default text, or what computes it. */
static const char *describe_default(const struct cfg_key *k)
{
	if (k->def)
		return k->def[0] ? k->def : "empty";
	return k->def_doc ? k->def_doc : "unset";
}

/* Write s for mdoc: backslashes escaped, and a leading '.' or '\'' defused. */
static void describe_mdoc_text(FILE *out, const char *s)
{
	if (s[0] == '.' || s[0] == '\'')
		fputs("\\&", out);
	for (; *s; s++) {
		if (*s == '\\')
			fputs("\\e", out);
		else
			fputc(*s, out);
	}
}

static void describe_range(const struct cfg_key *k, char *buf, size_t bufsz)
{
	char lo[32], hi[32];

	buf[0] = '\0';
	if (k->type == CFG_T_UINT || k->type == CFG_T_SIZE || k->type == CFG_T_DURATION) {
		config_key_format(k, k->min, lo, sizeof(lo));
		config_key_format(k, k->max, hi, sizeof(hi));
		if (k->type == CFG_T_UINT && k->enums && k->min == 0)
			snprintf(lo, sizeof(lo), "1");
		snprintf(buf, bufsz, "%s to %s", lo, hi);
	}
}

static const char *describe_arg(const struct cfg_key *k, char *buf, size_t bufsz)
{
	if (k->type == CFG_T_ENUM) {
		config_key_values(k, " | ", buf, bufsz);
		return buf;
	}
	if (k->type == CFG_T_BOOL)
		return "yes | no";
	if (k->type == CFG_T_UINT && k->enums) {
		snprintf(buf, bufsz, "%s | %s", k->arg, k->enums[0]);
		return buf;
	}
	return k->arg ? k->arg : "value";
}

static void describe_text(FILE *out, const struct cfg_key *k)
{
	char arg[128], range[80];

	describe_range(k, range, sizeof(range));
	fprintf(out, "  %s = %s\n      %s\n      Default: %s.", k->name,
		describe_arg(k, arg, sizeof(arg)), k->help, describe_default(k));
	if (range[0])
		fprintf(out, " Range: %s.", range);
	fputc('\n', out);
}

static void describe_mdoc(FILE *out, const struct cfg_key *k)
{
	char arg[128], range[80];

	describe_range(k, range, sizeof(range));
	fprintf(out, ".It Ic %s No = Ar ", k->name);
	describe_mdoc_text(out, describe_arg(k, arg, sizeof(arg)));
	fputc('\n', out);
	describe_mdoc_text(out, k->help);
	fputs("\nDefault:\n", out);
	if (k->def && k->def[0])
		fprintf(out, ".Ql \"%s\" .\n", k->def);
	else
		fprintf(out, "%s.\n", describe_default(k));
	if (range[0])
		fprintf(out, "Range: %s.\n", range);
}

void config_describe(FILE *out, enum config_doc_format fmt)
{
	static const char *const titles[] = { "[gateway]", "[domain NAME]", "[ldap NAME]" };

	for (int sec = CFG_SEC_GATEWAY; sec <= CFG_SEC_LDAP; sec++) {
		if (fmt == CONFIG_DOC_MDOC)
			fprintf(out, ".Ss Keys of %s\n.Bl -tag -width Ds\n", titles[sec]);
		else
			fprintf(out, "%s%s\n", sec ? "\n" : "", titles[sec]);
		for (size_t i = 0; i < config_nkeys; i++) {
			if (config_keys[i].section != (enum cfg_section)sec)
				continue;
			if (fmt == CONFIG_DOC_MDOC)
				describe_mdoc(out, &config_keys[i]);
			else
				describe_text(out, &config_keys[i]);
		}
		if (fmt == CONFIG_DOC_MDOC)
			fputs(".El\n", out);
	}
}
