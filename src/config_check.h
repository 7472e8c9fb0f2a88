/* config_check.h - checks on configuration values beyond their type (config_check.c): named in
 * the rows of config_keys[], and used by the rows of the source and store registries (rcpt.c,
 * vcache.c) that check their own specs. Pure, no I/O except config_check_file. Each returns 0,
 * or -1 with *why pointing at a static sentence for the FILE:LINE message. */
#ifndef BACKSTOP_CONFIG_CHECK_H
#define BACKSTOP_CONFIG_CHECK_H

int config_check_listen(const char *value, const char **why);
int config_check_mode(const char *value, const char **why);
int config_check_socket_path(const char *value, const char **why); /* absolute unix socket path or "" */
/* host:port,... of backends: a host (not *) and a port other than 0 each */
int config_check_deliver(const char *value, const char **why);
int config_check_hostname(const char *value, const char **why);
int config_check_domain(const char *value, const char **why);
int config_check_file(const char *value, const char **why);   /* exists and is readable */
int config_check_word(const char *value, const char **why);
int config_check_redis_prefix(const char *value, const char **why); /* letters, digits, - _ . or empty */   /* printable ASCII, no space */
int config_check_text(const char *value, const char **why);   /* printable ASCII, not empty */
int config_check_reply_text(const char *value, const char **why);
int config_check_sender(const char *value, const char **why);
int config_check_delimiter(const char *value, const char **why);
int config_check_ldap_uri(const char *value, const char **why);
int config_check_ldap_query(const char *value, const char **why);
int config_check_ldap_name(const char *value, const char **why); /* the NAME of [ldap NAME] */

#endif
