/* config.h - backstop's configuration: the loaded, validated, immutable view of backstop.conf.
 * A config is built by config_load(), never modified afterwards, and shared by all threads
 * through reference counting: a session holds the config it started with, so SIGHUP can swap
 * in a new one atomically while old sessions finish on the old one.
 * Every key is a row in one declarative table (config.c: config_keys[]) that drives parsing,
 * defaults, range checks, check-config and the option list of backstop.conf(5). */
#ifndef BACKSTOP_CONFIG_H
#define BACKSTOP_CONFIG_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "cidr.h"
#include "smtp_address.h"
#include "version.h" /* BACKSTOP_SYSCONFDIR */

#define CONFIG_DEFAULT_PATH BACKSTOP_SYSCONFDIR "/backstop/backstop.conf"

/* host:port as written; host "*" (or empty) means every address. */
struct bs_hostport {
	char host[SMTP_DOMAIN_MAX + 1]; /* without IPv6 brackets */
	char port[8];
};

struct bs_hostport_list {
	struct bs_hostport *items;
	size_t n;
};

/* A listening address that is either host:port or a unix socket ("unix:/path"). */
#define BS_UNIX_PATH_MAX 108 /* sizeof(sockaddr_un.sun_path) on Linux */
struct bs_listener {
	bool is_unix;
	struct bs_hostport inet;        /* when !is_unix */
	char path[BS_UNIX_PATH_MAX];    /* when is_unix: absolute path */
};

struct bs_listener_list {
	struct bs_listener *items;
	size_t n;
};

enum deliver_tls_mode { DELIVER_TLS_MAY = 0, DELIVER_TLS_MUST, DELIVER_TLS_NONE };
enum deliver_policy { DELIVER_FAILOVER = 0, DELIVER_ROUND_ROBIN };
enum pregreet_action { PREGREET_LOG = 0, PREGREET_REJECT };
enum log_target { LOG_TARGET_STDERR = 0, LOG_TARGET_SYSLOG };
enum on_unavailable { ON_UNAVAILABLE_DEFER = 0, ON_UNAVAILABLE_ACCEPT };
enum on_catchall { ON_CATCHALL_ACCEPT = 0, ON_CATCHALL_UNAVAILABLE };
enum ldap_preset { LDAP_PRESET_ACTIVE_DIRECTORY = 0, LDAP_PRESET_OPENLDAP, LDAP_PRESET_NONE };
/* What SPF results do (issue 11): in [gateway], overridable per [domain] of the recipient. */
enum spf_fail_action { SPF_FAIL_REJECT = 0, SPF_FAIL_TAG, SPF_FAIL_OFF };
enum spf_softfail_action { SPF_SOFTFAIL_TAG = 0, SPF_SOFTFAIL_REJECT };
enum spf_temperror_action { SPF_TEMPERROR_DEFER = 0, SPF_TEMPERROR_TAG };
enum spf_permerror_action { SPF_PERMERROR_TAG = 0, SPF_PERMERROR_REJECT };

/* The SPF actions of [gateway] or of one [domain] (which inherits what it does not set). */
struct bs_spf_actions {
	enum spf_fail_action fail;
	enum spf_softfail_action softfail;
	enum spf_temperror_action temperror;
	enum spf_permerror_action permerror;
	char *skip;                     /* CIDR list as written ("" none) */
};
enum dnsbl_action { DNSBL_ACTION_REJECT = 0, DNSBL_ACTION_LOG };

struct bs_strlist {
	char **items;
	size_t n;
};

/* One [domain NAME] section: a domain we accept mail for. */
struct bs_domain {
	char name[SMTP_DOMAIN_MAX + 1]; /* normalised with domain_normalise() */
	unsigned line;                  /* line of the section header, for messages */
	struct bs_hostport_list deliver; /* backends, in order */
	enum deliver_policy deliver_policy;
	enum deliver_tls_mode deliver_tls;
	char *deliver_tls_ca;           /* CA file to verify the backend with (must); NULL if unset */
	/* recipient verification (issue 4) */
	struct bs_strlist verify;       /* source specs in order: "map:/path", "callout:h:p", "ldap:NAME" */
	enum on_unavailable on_unavailable;
	enum on_catchall on_catchall;
	bool case_sensitive_local;
	char recipient_delimiter[8];    /* "" = no sub-addressing */
	uint64_t positive_ttl_ms;       /* defaults to [gateway] positive_ttl */
	uint64_t negative_ttl_ms;       /* defaults to [gateway] negative_ttl */
	int reject_code;                /* reply for INVALID (550) */
	char *reject_text;              /* default "Recipient address rejected: User unknown" */
	struct bs_spf_actions spf;      /* spf_fail ... spf_skip, [gateway]'s unless set here */
};

/* One [ldap NAME] section (issue 5), referenced as verify = ldap:NAME. */
struct bs_ldap {
	char name[64];
	unsigned line;
	struct bs_strlist uri;          /* tried in order */
	bool starttls;
	char *tls_ca;
	char *bind_dn;
	char *bind_password_file;       /* the password itself is read when the source opens */
	char *base;
	enum ldap_preset preset;
	char *query;                    /* NULL: the preset's filter */
	uint64_t timeout_ms;
	uint64_t connections;
	bool include_disabled;
};

struct bs_config {
	atomic_int refs;
	char *path;

	/* [gateway] */
	struct bs_hostport_list listen;
	char *hostname;
	unsigned workers;               /* 0 = auto: one per core */
	uint64_t max_connections;
	uint64_t max_connections_per_ip;
	uint64_t max_message_size;      /* octets */
	uint64_t max_recipients;
	uint64_t max_command_line;      /* octets including CRLF (512) */
	uint64_t max_line_length;       /* DATA text line, octets including CRLF (1000) */
	uint64_t command_timeout_ms;
	uint64_t data_timeout_ms;
	uint64_t max_errors;            /* then 421 4.7.0 and disconnect */
	uint64_t error_delay_after;     /* error replies in a session before error_delay applies */
	uint64_t error_delay_ms;        /* then each refused RCPT is answered this much later */
	uint64_t max_junk_commands;     /* NOOP/RSET/VRFY/HELP/unknown beyond this: 421 */
	uint64_t greet_delay_ms;        /* wait before the banner, to catch pregreeting clients */
	enum pregreet_action pregreet;
	char *proxy_protocol_from;      /* "" = none; parsed into proxy_from */
	uint64_t proxy_protocol_timeout_ms;
	struct cidr_list proxy_from;    /* computed from proxy_protocol_from (config_validate.c) */
	char *tls_cert;                 /* NULL if unset */
	char *tls_key;
	char *user;                     /* NULL: do not change user */
	bool bare_newline_normalise;    /* bare_newline = reject (false) | normalise (true) */
	bool helo_lenient;              /* helo_syntax = strict (false) | lenient (true) */
	bool allow_routing_localparts;
	char postmaster_domain[SMTP_DOMAIN_MAX + 1]; /* default: the first [domain] */
	enum log_target log;
	int log_level;                  /* enum log_level */
	uint64_t shutdown_timeout_ms;
	/* towards the backends (in-line delivery); shorter than the client's timeouts */
	uint64_t backend_connect_timeout_ms;
	uint64_t backend_command_timeout_ms;
	uint64_t backend_data_timeout_ms;
	uint64_t backend_retry_after_ms;  /* circuit breaker: how long a failed backend is skipped */
	uint64_t backend_idle_timeout_ms; /* idle backend sessions kept for the next client session */
	uint64_t deliver_max_connections; /* per backend host:port, across workers (16) */
	/* recipient verification (issue 4) */
	char *cache;                    /* "lmdb:/var/lib/backstop/verdicts" or "memory:" */
	uint64_t cache_max_size;        /* octets (LMDB map size) */
	char *cache_redis_prefix;       /* "" or a word: keys backstop:PREFIX:... */
	char *cache_redis_password_file; /* NULL: no AUTH */
	char *cache_redis_tls_ca;       /* NULL: the system's CAs */
	uint64_t cache_redis_timeout_ms;
	uint64_t cache_redis_local_ttl_ms;
	uint64_t cache_redis_local_size;
	uint64_t positive_ttl_ms;       /* 24h */
	uint64_t negative_ttl_ms;       /* 5m */
	uint64_t verify_timeout_ms;     /* 20s: in-session budget per RCPT */
	uint64_t decision_timeout_ms;   /* 25s: deadline of one stage's decision (engine) */
	uint64_t callout_max_connections; /* per validation server (2) */
	char *callout_sender;           /* "" = null sender <> */
	uint64_t callout_timeout_ms;    /* per probe reply */
	uint64_t callout_max_rate;      /* probes per second per validation server; 0: no limit */
	/* the harvest defence (check_harvest.c): budgets of unknown recipients per client */
	char *harvest_limit;            /* per client address: "25/1h", "0" off (budget_rule_parse) */
	char *harvest_network_limit;    /* per client network: "100/1h" */
	uint64_t harvest_ipv4_prefix;   /* the network of an IPv4 client (24) */
	uint64_t harvest_ipv6_prefix;   /* the network of an IPv6 client (64) */
	uint64_t harvest_tarpit_ms;     /* delay of each reply to a client over budget */
	uint64_t harvest_penalty_ms;    /* 421 at the banner for this long after the budget tripped */
	uint64_t harvest_max_entries;   /* addresses and networks counted at most (restart) */
	/* the Postfix policy service (policyd.c) */
	struct bs_listener_list policy_listen; /* empty: no policy service */
	char *policy_socket_mode;       /* octal, for unix sockets ("0660") */
	char *policy_socket_owner;      /* NULL: the user backstop runs as */
	char *policy_socket_group;      /* NULL: that user's group */
	uint64_t policy_timeout_ms;     /* idle time before a policy connection is closed */
	uint64_t policy_max_connections; /* policy connections, all workers together */
	/* DNS and SPF (issue 11) */
	char *dns_servers;              /* "127.0.0.1:5353, [::1]:53"; NULL: /etc/resolv.conf */
	bool spf;                       /* SPF checks on */
	bool spf_helo;                  /* also the HELO identity on its own */
	struct bs_spf_actions spf_actions; /* spf_fail ... spf_skip of [gateway] */
	char *authserv_id;              /* Authentication-Results: authserv-id; default hostname */
	/* DNS blocklists at connect (check_dnsbl.c) and `backstop blcheck` (issue 12); the lists
	 * are parsed and checked by the check's validate hook (dnsbl_sites.h syntax) */
	char *dnsbl_sites;              /* NULL or "": no screening */
	uint64_t dnsbl_threshold;       /* score from which a client is refused (3) */
	enum dnsbl_action dnsbl_action;
	char *dnsbl_skip;               /* CIDRs never screened, NULL: none */
	uint64_t dnsbl_timeout_ms;      /* all lists' answers, then the missing ones score 0 */
	char *blcheck_sites;            /* NULL: the built-in list (dnsbl_cli.c) */
	char *blcheck_addresses;        /* NULL: none (give them on the command line) */
	/* operations */
	struct bs_hostport_list metrics_listen; /* empty: no metrics endpoint or status page */
	/* the control socket (control.c) */
	char *control_socket;           /* unix socket path; "" = none */
	char *control_socket_mode;      /* octal ("0660") */
	char *control_socket_group;     /* NULL: the group of `user` (or of the process) */

	unsigned *gateway_lines;        /* per config_keys[] row: line that set a [gateway] key, 0 if
					 * it kept its default (for messages: config_gateway_line()) */

	/* [domain NAME] sections, sorted by name for binary search */
	struct bs_domain *domains;
	size_t ndomains;
	/* [ldap NAME] sections, in file order */
	struct bs_ldap *ldaps;
	size_t nldaps;
};

/* Errors collected while loading: each is "FILE:LINE: message" (LINE 0 when not tied to a line). */
struct config_errors {
	char **msgs;
	size_t n;
};
void config_errors_free(struct config_errors *errs);

/* Load and validate path. Returns a config with one reference, or NULL with *errs filled (every
 * error of the file, not only the first). Runs on the main thread (may block on the file). */
struct bs_config *config_load(const char *path, struct config_errors *errs);
/* The same for a file already in memory (len bytes, any content); name is used in messages.
 * For tests, fuzzing and configs that do not come from a file. */
struct bs_config *config_load_buffer(const char *name, const char *buf, size_t len,
				     struct config_errors *errs);

/* The value of one [gateway] key as written in path (or its default when it is not set, or the
 * file cannot be read), read without validating the rest of the file: how the CLI finds
 * control_socket in a file that may have errors (backstop reload). 1 set in the file, 0 the
 * default, -1 the file cannot be read (the default too). */
int config_peek_gateway(const char *path, const char *name, char *out, size_t outsz);

struct bs_config *config_ref(struct bs_config *cfg);
void config_unref(struct bs_config *cfg);

/* Find the [domain] for a domain already normalised with domain_normalise(); NULL if none. */
const struct bs_domain *config_find_domain(const struct bs_config *cfg, const char *domain);

/* Line of the file where [gateway] key `name` was set; 0 if it kept its default. */
unsigned config_gateway_line(const struct bs_config *cfg, const char *name);

/* Find an [ldap NAME] section; NULL if none. */
const struct bs_ldap *config_find_ldap(const struct bs_config *cfg, const char *name);

/* Describe every key (section, name, type, default, help): FMT_TEXT for `--help` style output,
 * FMT_MDOC for the option list of backstop.conf(5). */
enum config_doc_format { CONFIG_DOC_TEXT, CONFIG_DOC_MDOC };
void config_describe(FILE *out, enum config_doc_format fmt);

#endif
