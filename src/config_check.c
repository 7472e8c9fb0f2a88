/* config_check.c - checks on configuration values beyond their type: host names, readable
 * files, LDAP URIs and filters. Each is named in a row of config_keys[]; the verify and cache
 * specs are checked by the rows of their registries (rcpt_spec_check, vcache_spec_check). */
#include <ctype.h>
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "config_check.h"
#include "config_value.h"
#include "smtp_address.h"

int config_check_listen(const char *value, const char **why)
{
	(void)value;
	(void)why;
	return 0; /* any host:port, "*" and port 0 included */
}

int config_check_mode(const char *value, const char **why)
{
	size_t n = strlen(value);

	if (n < 1 || n > 4 || strspn(value, "01234567") != n) {
		*why = "expected an octal file mode such as 0660";
		return -1;
	}
	return 0;
}

int config_check_socket_path(const char *value, const char **why)
{
	size_t n = strlen(value);

	if (n == 0)
		return 0; /* none */
	if (value[0] != '/' || n >= BS_UNIX_PATH_MAX) {
		*why = "expected an absolute path of at most 107 characters, or nothing";
		return -1;
	}
	return 0;
}

int config_check_deliver(const char *value, const char **why)
{
	struct bs_hostport_list l = { NULL, 0 };
	int rc = 0;

	if (cfgval_hostport_list(value, &l, why) < 0)
		return -1;
	for (size_t i = 0; i < l.n && rc == 0; i++) {
		if (l.items[i].host[0] == '\0' || strcmp(l.items[i].host, "*") == 0) {
			*why = "a backend needs a host name or address, not *";
			rc = -1;
		} else if (strspn(l.items[i].port, "0") == strlen(l.items[i].port)) { /* 0, 00 */
			*why = "a backend needs a port other than 0";
			rc = -1;
		}
	}
	cfgval_hostport_list_free(&l);
	return rc;
}

int config_check_domain(const char *value, const char **why)
{
	char norm[SMTP_DOMAIN_MAX + 1];

	if (domain_normalise(value, strlen(value), true, norm, sizeof(norm)) == 0) {
		*why = "not a valid domain name";
		return -1;
	}
	return 0;
}

int config_check_hostname(const char *value, const char **why)
{
	if (value[0] == '[' || config_check_domain(value, why) < 0) {
		*why = "not a valid host name";
		return -1;
	}
	return 0;
}

int config_check_file(const char *value, const char **why)
{
	if (value[0] == '\0') {
		*why = "expected a file name";
		return -1;
	}
	if (access(value, R_OK) == 0)
		return 0;
	switch (errno) {
	case ENOENT: *why = "file not found"; break;
	case EACCES: *why = "file not readable (permission denied)"; break;
	default: *why = "file not readable"; break;
	}
	return -1;
}

/* Printable ASCII, spaces allowed, not empty. */
int config_check_text(const char *value, const char **why)
{
	if (value[0] == '\0') {
		*why = "must not be empty";
		return -1;
	}
	for (const char *p = value; *p; p++) {
		if ((unsigned char)*p < 0x20 || (unsigned char)*p >= 0x7f) {
			*why = "only printable ASCII characters are allowed";
			return -1;
		}
	}
	return 0;
}

/* One word: printable ASCII without spaces. */
int config_check_word(const char *value, const char **why)
{
	if (config_check_text(value, why) < 0)
		return -1;
	if (strchr(value, ' ')) {
		*why = "expected a single word";
		return -1;
	}
	return 0;
}

int config_check_reply_text(const char *value, const char **why)
{
	if (config_check_text(value, why) < 0)
		return -1;
	if (strlen(value) > 400) {
		*why = "reply text too long (at most 400 characters)";
		return -1;
	}
	return 0;
}

/* "" (the null sender) or local@domain. */
int config_check_sender(const char *value, const char **why)
{
	const char *at = strrchr(value, '@');

	if (value[0] == '\0')
		return 0;
	if (!at || at == value || (size_t)(at - value) > SMTP_LOCAL_MAX ||
	    config_check_word(value, why) < 0 || strpbrk(value, "<>") ||
	    config_check_domain(at + 1, why) < 0) {
		*why = "expected an address local@domain, or nothing for the null sender";
		return -1;
	}
	return 0;
}

int config_check_delimiter(const char *value, const char **why)
{
	for (const char *p = value; *p; p++) {
		if (!isgraph((unsigned char)*p) || *p == '@' || *p == '"') {
			*why = "delimiters must be printable characters other than @ and \"";
			return -1;
		}
	}
	return 0;
}

int config_check_ldap_name(const char *value, const char **why)
{
	size_t n = strlen(value);

	if (n == 0 || n > 63 || strspn(value, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
					      "0123456789_.-") != n) {
		*why = "an LDAP section name is 1-63 letters, digits, '_', '.' or '-'";
		return -1;
	}
	return 0;
}

int config_check_ldap_uri(const char *value, const char **why)
{
	static const char *const schemes[] = { "ldap://", "ldaps://", "ldapi://" };

	for (size_t i = 0; i < sizeof(schemes) / sizeof(schemes[0]); i++)
		if (strncmp(value, schemes[i], strlen(schemes[i])) == 0)
			return config_check_word(value, why);
	*why = "expected an ldap://, ldaps:// or ldapi:// URI";
	return -1;
}

/* A filter in parentheses, balanced, with %s where the address goes. */
int config_check_ldap_query(const char *value, const char **why)
{
	int depth = 0;

	if (config_check_text(value, why) < 0)
		return -1;
	for (const char *p = value; *p; p++) {
		depth += *p == '(' ? 1 : *p == ')' ? -1 : 0;
		if (depth < 0)
			break;
	}
	if (value[0] != '(' || depth != 0) {
		*why = "expected an LDAP filter in balanced parentheses";
		return -1;
	}
	if (!strstr(value, "%s")) {
		*why = "the query needs %s where the recipient address goes";
		return -1;
	}
	return 0;
}

int config_check_redis_prefix(const char *value, const char **why)
{
	for (const char *p = value; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || strchr("-_.", *p))) {
			*why = "expected letters, digits, '-', '_' or '.'";
			return -1;
		}
	if (strlen(value) > 64) {
		*why = "at most 64 characters";
		return -1;
	}
	return 0;
}
