/* config.c - backstop's configuration: the declarative key table config_keys[] (one row per key:
 * parsing, defaults, ranges, documentation), the config's lifetime (reference counting) and its
 * look-ups. Loading is in config_load.c, value checks in config_check.c (verify and cache specs:
 * the rows of their registries, rcpt.c and vcache.c), docs in config_describe.c. */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "config_keys.h"
#include "config_value.h"
#include "cidr.h"    /* cidr_list_check */
#include "dns.h"     /* dns_servers_check */
#include "budget_store.h" /* budget_rule_check */
#include "rcpt.h"   /* rcpt_spec_check */
#include "vcache.h" /* vcache_spec_check, VCACHE_DEFAULT */

#define GW(f) offsetof(struct bs_config, f), sizeof(((struct bs_config *)0)->f)
#define DOM(f) offsetof(struct bs_domain, f), sizeof(((struct bs_domain *)0)->f)
#define LD(f) offsetof(struct bs_ldap, f), sizeof(((struct bs_ldap *)0)->f)
#define G CFG_SEC_GATEWAY
#define D CFG_SEC_DOMAIN
#define L CFG_SEC_LDAP
#define MINUTES(ms) ((uint64_t)(ms) * 60000)
#define HOURS(ms) ((uint64_t)(ms) * 3600000)
#define DAYS(ms) ((uint64_t)(ms) * 86400000)
#define KB(n) ((uint64_t)(n) << 10)
#define MB(n) ((uint64_t)(n) << 20)
#define GB(n) ((uint64_t)(n) << 30)

static const char *const e_auto[] = { "auto", NULL };
static const char *const e_pregreet[] = { "log", "reject", NULL };
static const char *const e_bare_newline[] = { "reject", "normalise", NULL };
static const char *const e_helo_syntax[] = { "strict", "lenient", NULL };
static const char *const e_log[] = { "stderr", "syslog", NULL };
static const char *const e_log_level[] = { "error", "warning", "notice", "info", "debug", NULL };
static const char *const e_deliver_policy[] = { "failover", "round-robin", NULL };
static const char *const e_deliver_tls[] = { "may", "must", "none", NULL };
static const char *const e_on_unavailable[] = { "defer", "accept", NULL };
static const char *const e_on_catchall[] = { "accept", "unavailable", NULL };
static const char *const e_preset[] = { "active-directory", "openldap", "none", NULL };
static const char *const e_spf_fail[] = { "reject", "tag", "off", NULL };
static const char *const e_spf_softfail[] = { "tag", "reject", NULL };
static const char *const e_spf_temperror[] = { "defer", "tag", NULL };
static const char *const e_spf_permerror[] = { "tag", "reject", NULL };
static const char *const e_dnsbl_action[] = { "reject", "log", NULL };

/* Field names follow the key names; the order here is the order of the documentation. */
const struct cfg_key config_keys[] = {
	/* [gateway]: the listener and SMTP session limits */
	{ G, "listen", CFG_T_HOSTPORTS, "127.0.0.1:25", NULL, 0, 0, NULL, GW(listen),
	  config_check_listen, "host:port,...",
	  "Addresses to accept SMTP connections on, separated by commas or spaces. IPv6 addresses "
	  "go in brackets ([::1]:25); * means every address. Port 0 lets the system pick a free "
	  "port, which is logged. Empty: no SMTP listener, for a site that uses only the Postfix "
	  "policy service (policy_listen must then be set)." },
	{ G, "hostname", CFG_T_STR, NULL, "the system's host name", 0, 0, NULL, GW(hostname),
	  config_check_hostname, "name",
	  "Name announced in the banner and in the EHLO reply." },
	{ G, "workers", CFG_T_UINT, "auto", NULL, 0, 1024, e_auto, GW(workers), NULL, "count",
	  "Worker threads serving connections; auto means one per CPU core." },
	{ G, "max_connections", CFG_T_UINT, "10000", NULL, 1, 10000000, NULL, GW(max_connections),
	  NULL, "count", "Simultaneous client connections; more are refused with 421." },
	{ G, "max_connections_per_ip", CFG_T_UINT, "50", NULL, 1, 10000000, NULL,
	  GW(max_connections_per_ip), NULL, "count",
	  "Simultaneous client connections from one IP address." },
	{ G, "max_message_size", CFG_T_SIZE, "50M", NULL, KB(1), GB(64), NULL, GW(max_message_size),
	  NULL, "size", "Largest message accepted, announced with the SIZE extension." },
	{ G, "max_recipients", CFG_T_UINT, "100", NULL, 1, 100000, NULL, GW(max_recipients), NULL,
	  "count", "Recipients accepted per message; further RCPT commands get 452." },
	{ G, "max_command_line", CFG_T_SIZE, "512", NULL, 512, KB(64), NULL, GW(max_command_line),
	  NULL, "size", "Longest SMTP command line, CRLF included (RFC 5321 minimum: 512). MAIL and RCPT lines may "
	  "be 600 octets longer for their parameters (RFC 3461 4); the backend gets them as accepted." },
	{ G, "max_line_length", CFG_T_SIZE, "1000", NULL, 1000, MB(1), NULL, GW(max_line_length),
	  NULL, "size", "Longest line of message text, CRLF included (RFC 5321 minimum: 1000)." },
	{ G, "command_timeout", CFG_T_DURATION, "5m", NULL, 1, HOURS(1), NULL, GW(command_timeout_ms),
	  NULL, "duration",
	  "How long the client has to send its next complete command line (a deadline, not an idle "
	  "timer: a client dribbling bytes is cut too); then 421 4.4.2." },
	{ G, "data_timeout", CFG_T_DURATION, "3m", NULL, 1, HOURS(1), NULL, GW(data_timeout_ms), NULL,
	  "duration", "How long to wait for more message text during DATA (idle time between reads)." },
	{ G, "max_errors", CFG_T_UINT, "20", NULL, 1, 100000, NULL, GW(max_errors), NULL, "count",
	  "Error replies in one session before backstop answers 421 (after the replies still owed) and "
	  "disconnects; 452 4.5.3 past max_recipients is flow control and does not count." },
	{ G, "error_delay_after", CFG_T_UINT, "10", NULL, 0, 100000, NULL, GW(error_delay_after), NULL,
	  "count", "Error replies in one session (counted as for max_errors) before error_delay "
	  "applies, as Postfix's smtpd_soft_error_limit." },
	{ G, "error_delay", CFG_T_DURATION, "1s", NULL, 0, MINUTES(1), NULL, GW(error_delay_ms), NULL,
	  "duration", "Once a session has had error_delay_after error replies, each further refused "
	  "RCPT is answered this much later (a timer: no worker waits), as Postfix's "
	  "smtpd_error_sleep_time: a harvester's every session slows to a reply per error_delay. "
	  "Replies behind it keep their order. Not while the transaction has a recipient accepted "
	  "(it holds a backend connection). 0: no delay." },
	{ G, "max_junk_commands", CFG_T_UINT, "100", NULL, 1, 1000000, NULL, GW(max_junk_commands),
	  NULL, "count",
	  "NOOP, RSET, VRFY, HELP and unknown commands in one session before 421 and disconnect." },
	{ G, "greet_delay", CFG_T_DURATION, "0s", NULL, 0, MINUTES(5), NULL, GW(greet_delay_ms), NULL,
	  "duration", "Wait this long before the banner, to catch clients that talk first." },
	{ G, "pregreet", CFG_T_ENUM, "log", NULL, 0, 0, e_pregreet, GW(pregreet), NULL, NULL,
	  "What to do with a client that talks before the banner, when greet_delay is above 0: log it, "
	  "or reject it (554 5.5.1) and disconnect." },
	{ G, "proxy_protocol_from", CFG_T_STR, "", NULL, 0, 0, NULL, GW(proxy_protocol_from),
	  cidr_list_check, "CIDR,...",
	  "Load balancers (address blocks, commas or spaces between them) whose SMTP connections start "
	  "with a PROXY protocol header, version 1 or 2 (HAProxy send-proxy, send-proxy-v2): the "
	  "client address in the header is used for everything (logs, connection limits, budgets, "
	  "DNSBL, SPF, Received:); a connection from them without a valid header is closed. Others "
	  "must not send one (it would be a bad command). Empty: no PROXY protocol." },
	{ G, "proxy_protocol_timeout", CFG_T_DURATION, "5s", NULL, 100, MINUTES(5), NULL,
	  GW(proxy_protocol_timeout_ms), NULL, "duration",
	  "How long a connection from proxy_protocol_from has to send its whole PROXY header." },
	{ G, "tls_cert", CFG_T_STR, NULL, "unset", 0, 0, NULL, GW(tls_cert), config_check_file,
	  "file", "PEM certificate chain; STARTTLS is offered when tls_cert and tls_key are set." },
	{ G, "tls_key", CFG_T_STR, NULL, "unset", 0, 0, NULL, GW(tls_key), config_check_file, "file",
	  "PEM private key for tls_cert." },
	{ G, "user", CFG_T_STR, NULL, "unset", 0, 0, NULL, GW(user), config_check_word, "name",
	  "User to switch to after binding the listeners, when started as root." },
	{ G, "bare_newline", CFG_T_ENUM, "reject", NULL, 0, 0, e_bare_newline,
	  GW(bare_newline_normalise), NULL, NULL,
	  "Message text with a bare CR or LF: reject it (554 5.6.0) or normalise it to CRLF; either way the session ends after that message." },
	{ G, "helo_syntax", CFG_T_ENUM, "strict", NULL, 0, 0, e_helo_syntax, GW(helo_lenient), NULL,
	  NULL,
	  "HELO/EHLO argument that is not a domain or an address literal (RFC 5321 4.1.1.1): refuse "
	  "it (501 5.5.4), or accept it and show only its first word, sanitised, in Received: and "
	  "the logs." },
	{ G, "allow_routing_localparts", CFG_T_BOOL, "no", NULL, 0, 0, NULL,
	  GW(allow_routing_localparts), NULL, NULL,
	  "Accept local parts holding routing characters such as % ! @." },
	{ G, "postmaster_domain", CFG_T_BUF, NULL, "the first [domain] section", 0, 0, NULL,
	  GW(postmaster_domain), config_check_domain, "domain",
	  "Domain of the postmaster address that RCPT TO:<postmaster> is taken to mean." },
	{ G, "log", CFG_T_ENUM, "stderr", NULL, 0, 0, e_log, GW(log), NULL, NULL,
	  "Where the log goes." },
	{ G, "log_level", CFG_T_ENUM, "info", NULL, 0, 0, e_log_level, GW(log_level), NULL, NULL,
	  "Least important messages that are logged." },
	{ G, "shutdown_timeout", CFG_T_DURATION, "30s", NULL, 0, HOURS(1), NULL,
	  GW(shutdown_timeout_ms), NULL, "duration",
	  "On shutdown, how long sessions in progress may take to finish (then 421, except to a session waiting for the backend's reply to its final dot)." },
	/* [gateway]: in-line delivery to the backends */
	{ G, "backend_connect_timeout", CFG_T_DURATION, "10s", NULL, 1, HOURS(1), NULL,
	  GW(backend_connect_timeout_ms), NULL, "duration",
	  "How long to wait for a backend's connection and banner." },
	{ G, "backend_command_timeout", CFG_T_DURATION, "2m", NULL, 1, HOURS(1), NULL,
	  GW(backend_command_timeout_ms), NULL, "duration",
	  "How long to wait for a backend's reply to a command." },
	{ G, "backend_data_timeout", CFG_T_DURATION, "5m", NULL, 1, HOURS(1), NULL,
	  GW(backend_data_timeout_ms), NULL, "duration",
	  "How long to wait for a backend's reply to the end of the message. If none comes (or the backend closes), "
	  "the client's connection is closed without a reply: the backend may have the message, the client retries." },
	{ G, "backend_idle_timeout", CFG_T_DURATION, "10s", NULL, 0, HOURS(1), NULL,
	  GW(backend_idle_timeout_ms), NULL, "duration",
	  "How long a backend session left idle by a finished client session is kept for the next "
	  "one (per worker, at most 16 per backend); 0: close it when the client session ends." },
	{ G, "backend_retry_after", CFG_T_DURATION, "30s", NULL, 0, DAYS(1), NULL,
	  GW(backend_retry_after_ms), NULL, "duration",
	  "How long a backend that failed is skipped before it is tried again." },
	{ G, "deliver_max_connections", CFG_T_UINT, "16", NULL, 1, 100000, NULL,
	  GW(deliver_max_connections), NULL, "count",
	  "Connections open to one backend (host:port), all workers together, idle kept ones "
	  "included; a transaction that finds them all in use waits up to backend_connect_timeout "
	  "for one, then gets 451 4.4.5. Keep it below the backend's own limit per client "
	  "(Exchange: 20, Postfix: 50)." },
	/* [gateway]: recipient verification */
	{ G, "cache", CFG_T_STR, VCACHE_DEFAULT, NULL, 0, 0, NULL, GW(cache),
	  vcache_spec_check, "store",
	  "Where verification verdicts are cached: lmdb:DIRECTORY, memory: (lost on restart), or Redis "
	  "shared by several gateways (verdicts, harvest budgets and callout_max_rate): redis://HOST:PORT/DB, rediss://HOST:PORT/DB (TLS) or "
	  "redis+sentinel://HOST:PORT,HOST:PORT/MASTERNAME/DB." },
	{ G, "cache_max_size", CFG_T_SIZE, "256M", NULL, MB(1), GB(1024), NULL, GW(cache_max_size),
	  NULL, "size",
	  "Largest size of the verdict cache: the LMDB map size with lmdb:, cache_max_size / 256 "
	  "verdicts with memory:; not used with Redis (cache_redis_local_size bounds the local layer, "
	  "Redis's own maxmemory the rest)." },
	{ G, "cache_redis_prefix", CFG_T_STR, "", NULL, 0, 0, NULL, GW(cache_redis_prefix),
	  config_check_redis_prefix, "word",
	  "With a Redis cache: keys are backstop:PREFIX:v:ADDRESS (verdicts), backstop:PREFIX:l:ADDRESS "
	  "(probe locks) and the purge channel backstop:PREFIX:purge; empty: backstop:v:ADDRESS. "
	  "Gateways that share verdicts use the same prefix." },
	{ G, "cache_redis_password_file", CFG_T_STR, NULL, "unset", 0, 0, NULL,
	  GW(cache_redis_password_file), config_check_file, "file",
	  "With a Redis cache: file whose first line is the password (AUTH) of Redis." },
	{ G, "cache_redis_tls_ca", CFG_T_STR, NULL, "the system's CAs", 0, 0, NULL, GW(cache_redis_tls_ca),
	  config_check_file, "file",
	  "With rediss://: PEM certificates that Redis's certificate must chain to; its name must be the "
	  "HOST of the cache key." },
	{ G, "cache_redis_timeout", CFG_T_DURATION, "500ms", NULL, 10, 30000, NULL, GW(cache_redis_timeout_ms),
	  NULL, "duration",
	  "With a Redis cache: time to connect, and to wait for one reply; a slower Redis is treated as "
	  "unreachable for that lookup (the local layer answers, or the sources are asked)." },
	{ G, "cache_redis_local_ttl", CFG_T_DURATION, "10s", NULL, 0, HOURS(1), NULL,
	  GW(cache_redis_local_ttl_ms), NULL, "duration",
	  "With a Redis cache: how long a verdict read from or written to Redis answers again from this "
	  "gateway's memory without asking Redis (0: always ask). While Redis is unreachable the local "
	  "layer answers until the verdict's own TTL." },
	{ G, "cache_redis_local_size", CFG_T_UINT, "100000", NULL, 64, 100000000, NULL,
	  GW(cache_redis_local_size), NULL, "count",
	  "With a Redis cache: verdicts the local layer holds at most (about 200 octets each)." },
	{ G, "positive_ttl", CFG_T_DURATION, "24h", NULL, 1000, DAYS(365), NULL, GW(positive_ttl_ms),
	  NULL, "duration", "How long a recipient found to exist is remembered." },
	{ G, "negative_ttl", CFG_T_DURATION, "5m", NULL, 1000, DAYS(365), NULL, GW(negative_ttl_ms),
	  NULL, "duration",
	  "How long a recipient that an LDAP or callout source found not to exist is remembered (map verdicts are never cached): a new directory entry is refused for at most this long." },
	{ G, "verify_timeout", CFG_T_DURATION, "20s", NULL, 1, MINUTES(10), NULL, GW(verify_timeout_ms),
	  NULL, "duration",
	  "Time allowed to verify one recipient during a session; then the source is unavailable." },
	{ G, "decision_timeout", CFG_T_DURATION, "25s", NULL, 1000, MINUTES(10), NULL,
	  GW(decision_timeout_ms), NULL, "duration",
	  "Deadline of one stage's decision (connect, HELO, MAIL, RCPT, DATA), every lookup in it "
	  "included (verdict cache, sources, DNS): past it the command gets 451 4.4.3 (the policy "
	  "service: DEFER_IF_PERMIT), never a rejection. Keep it above verify_timeout, so that a "
	  "domain's on_unavailable decides first." },
	{ G, "callout_max_connections", CFG_T_UINT, "2", NULL, 1, 1000, NULL,
	  GW(callout_max_connections), NULL, "count",
	  "Simultaneous connections to one callout server." },
	{ G, "callout_sender", CFG_T_STR, "", NULL, 0, 0, NULL, GW(callout_sender),
	  config_check_sender, "address",
	  "MAIL FROM address of callout probes; empty means the null sender <>." },
	{ G, "callout_timeout", CFG_T_DURATION, "30s", NULL, 1, HOURS(1), NULL,
	  GW(callout_timeout_ms), NULL, "duration",
	  "How long to wait for each reply of a callout server." },
	{ G, "callout_max_rate", CFG_T_UINT, "100", NULL, 0, 100000, NULL, GW(callout_max_rate), NULL,
	  "probes/s",
	  "Probes per second sent to one callout server, all workers together, and all gateways "
	  "when the cache is Redis (0: no limit). In no "
	  "second does a server get more: past it, a recipient whose verdict is not cached gets "
	  "451 4.4.3 instead of a probe (whatever on_unavailable says), so a flood of unknown "
	  "addresses never reaches the validation server faster." },
	/* [gateway]: the harvest defence */
	{ G, "harvest_limit", CFG_T_STR, "25/1h", NULL, 0, 0, NULL, GW(harvest_limit),
	  budget_rule_check, "count/duration",
	  "Unknown recipients (a source's verdict that the address does not exist; never an "
	  "unavailable one) one client address may be told about within the sliding window; the "
	  "RCPT that reaches it starts harvest_penalty. A client over it gets 450 4.7.1 for every "
	  "RCPT, after harvest_tarpit, without any lookup. 0: no budget per address." },
	{ G, "harvest_network_limit", CFG_T_STR, "100/1h", NULL, 0, 0, NULL, GW(harvest_network_limit),
	  budget_rule_check, "count/duration",
	  "The same budget for all the client addresses of one network together (harvest_ipv4_prefix, "
	  "harvest_ipv6_prefix): every client of a network over it is treated as over budget. 0: no "
	  "budget per network." },
	{ G, "harvest_ipv4_prefix", CFG_T_UINT, "24", NULL, 1, 32, NULL, GW(harvest_ipv4_prefix), NULL,
	  "bits", "Prefix length of the network an IPv4 client is counted in for harvest_network_limit." },
	{ G, "harvest_ipv6_prefix", CFG_T_UINT, "64", NULL, 1, 128, NULL, GW(harvest_ipv6_prefix), NULL,
	  "bits", "Prefix length of the network an IPv6 client is counted in for harvest_network_limit." },
	{ G, "harvest_tarpit", CFG_T_DURATION, "5s", NULL, 0, MINUTES(1), NULL, GW(harvest_tarpit_ms),
	  NULL, "duration",
	  "How long each RCPT reply to a client over its harvest budget is held back (a timer: no "
	  "worker waits); not in a transaction that has a recipient accepted (it holds a backend "
	  "connection). Keep it below decision_timeout." },
	{ G, "harvest_penalty", CFG_T_DURATION, "1h", NULL, 0, DAYS(7), NULL, GW(harvest_penalty_ms),
	  NULL, "duration",
	  "After a client address or network reaches its harvest budget, its new connections get "
	  "421 4.7.0 instead of the banner for this long, and its RCPTs 450 4.7.1. 0: no penalty "
	  "(only the budget's own window)." },
	{ G, "harvest_max_entries", CFG_T_UINT, "100000", NULL, 100, 10000000, NULL,
	  GW(harvest_max_entries), NULL, "count",
	  "Client addresses and networks whose harvest budgets are kept in memory (about 150 octets "
	  "each; with a Redis cache, this gateway's own count, which answers while Redis is away); "
	  "past it the one counted least recently is forgotten. Budgets survive a reload; this "
	  "value changes at the next restart." },
	/* [gateway]: the Postfix policy service */
	{ G, "policy_listen", CFG_T_LISTENERS, "", NULL, 0, 0, NULL, GW(policy_listen), NULL,
	  "address,...",
	  "Addresses of the Postfix SMTP access policy service (check_policy_service), separated by "
	  "commas or spaces: host:port (IPv6 in brackets, port 0 picks a free port, which is logged) "
	  "or unix:/path for a unix socket, made as root before privileges are dropped (a stale "
	  "socket file is replaced). Empty: no policy service." },
	{ G, "policy_socket_mode", CFG_T_STR, "0660", NULL, 0, 0, NULL, GW(policy_socket_mode),
	  config_check_mode, "octal mode",
	  "Permissions of the policy service's unix sockets: Postfix's smtpd (user postfix) must be "
	  "able to write to it." },
	{ G, "policy_socket_owner", CFG_T_STR, NULL, "the user backstop runs as", 0, 0, NULL,
	  GW(policy_socket_owner), config_check_word, "user",
	  "Owner of the policy service's unix sockets." },
	{ G, "policy_socket_group", CFG_T_STR, NULL, "the group of the owner", 0, 0, NULL,
	  GW(policy_socket_group), config_check_word, "group",
	  "Group of the policy service's unix sockets (e.g. postfix, with policy_socket_mode = 0660)." },
	{ G, "policy_timeout", CFG_T_DURATION, "10m", NULL, 1000, HOURS(24), NULL,
	  GW(policy_timeout_ms), NULL, "duration",
	  "How long a policy connection may stay idle (no request, or a request not completed) "
	  "before backstop closes it. Keep it above Postfix's smtpd_policy_service_max_idle (300s), "
	  "so that Postfix closes idle connections first." },
	{ G, "policy_max_connections", CFG_T_UINT, "1000", NULL, 1, 1000000, NULL,
	  GW(policy_max_connections), NULL, "count",
	  "Simultaneous policy connections, all listeners together (Postfix opens one per smtpd "
	  "process: keep it above the smtpd process limit); more are closed at once. SMTP's "
	  "max_connections does not count them." },
	/* [gateway]: DNS and SPF */
	{ G, "dns_servers", CFG_T_STR, NULL, "the servers of /etc/resolv.conf", 0, 0, NULL, GW(dns_servers),
	  dns_servers_check, "address[:port],...",
	  "DNS servers for every lookup backstop makes (SPF, backends' and callout servers' names, "
	  "the commands; LDAP servers' names are libldap's, through the system's resolver), "
	  "separated by commas or spaces: 127.0.0.1:5353, [::1]:53 (port 53 when none). Best a local "
	  "caching resolver (unbound). A reload applies a new list." },
	{ G, "spf", CFG_T_BOOL, "off", NULL, 0, 0, NULL, GW(spf), NULL, NULL,
	  "Check SPF (RFC 7208) at MAIL FROM: the sender's domain, for the null sender the HELO name. "
	  "The results' actions are spf_fail, spf_softfail, spf_temperror and spf_permerror, applied "
	  "per recipient domain at RCPT (or at MAIL when every domain would refuse alike); mail "
	  "delivered in-line gets Received-SPF: and Authentication-Results:." },
	{ G, "spf_helo", CFG_T_BOOL, "off", NULL, 0, 0, NULL, GW(spf_helo), NULL, NULL,
	  "Also check the HELO name on its own (RFC 7208 2.3), before the sender: a HELO fail decides "
	  "(identity helo); any other HELO result lets the sender's result decide." },
	{ G, "spf_fail", CFG_T_ENUM, "reject", NULL, 0, 0, e_spf_fail, GW(spf_actions.fail), NULL, NULL,
	  "SPF fail: refuse (550 5.7.23 with the domain's explanation, RFC 7372), tag (deliver with "
	  "the headers), or off (as if no SPF)." },
	{ G, "spf_softfail", CFG_T_ENUM, "tag", NULL, 0, 0, e_spf_softfail, GW(spf_actions.softfail), NULL,
	  NULL, "SPF softfail: tag, or refuse (550 5.7.23)." },
	{ G, "spf_temperror", CFG_T_ENUM, "defer", NULL, 0, 0, e_spf_temperror, GW(spf_actions.temperror),
	  NULL, NULL,
	  "SPF temperror (a DNS timeout or server failure, never a fail): defer (451 4.7.24), or tag." },
	{ G, "spf_permerror", CFG_T_ENUM, "tag", NULL, 0, 0, e_spf_permerror, GW(spf_actions.permerror),
	  NULL, NULL, "SPF permerror (a broken record): tag, or refuse (550 5.7.24)." },
	{ G, "spf_skip", CFG_T_STR, "", NULL, 0, 0, NULL, GW(spf_actions.skip), cidr_list_check, "CIDR,...",
	  "Clients whose mail is not judged by SPF: the site's own relays, backup MX hosts, "
	  "forwarders (192.0.2.0/24, 2001:db8::/32, single addresses; commas or spaces)." },
	{ G, "authserv_id", CFG_T_STR, NULL, "hostname", 0, 0, NULL, GW(authserv_id), config_check_word,
	  "name",
	  "authserv-id of the Authentication-Results: header fields backstop adds (RFC 8601); "
	  "incoming ones that claim it are removed." },
	/* [gateway]: DNS blocklists (check_dnsbl.c, dnsbl_cli.c); the lists are checked by the
	 * check's validate hook */
	{ G, "dnsbl_sites", CFG_T_STR, NULL, "none (no screening)", 0, 0, NULL, GW(dnsbl_sites), NULL,
	  "site[=filter][*weight],...",
	  "DNS blocklists and allowlists asked about each client when it connects, in Postfix's "
	  "postscreen_dnsbl_sites syntax: zen.spamhaus.org=127.0.0.[2..11]*3, bl.spamcop.net*2, "
	  "list.dnswl.org=127.0.[0..255].[1..3]*-2. A list that answers with an address matching "
	  "the filter (any address without one) adds its weight (1 unless written) to the client's "
	  "score; negative weights are allowlists. All lists are asked in parallel and the banner "
	  "does not wait for them. IPv6 clients are asked in nibble format. A list that does not "
	  "answer in time scores 0 (logged); a reply in 127.255.255.0/24 (a list refusing the "
	  "resolver) is logged as an error, never a listing." },
	{ G, "dnsbl_threshold", CFG_T_UINT, "3", NULL, 1, 100000, NULL, GW(dnsbl_threshold), NULL,
	  "score",
	  "Score at or above which a client is refused: every RCPT of its session gets 550 5.7.1 "
	  "naming the lists (and the TXT reason of the first that gives one)." },
	{ G, "dnsbl_action", CFG_T_ENUM, "reject", NULL, 0, 0, e_dnsbl_action, GW(dnsbl_action), NULL,
	  NULL, "A client over dnsbl_threshold: reject its recipients, or only log the decision." },
	{ G, "dnsbl_skip", CFG_T_STR, NULL, "none", 0, 0, NULL, GW(dnsbl_skip), cidr_list_check, "CIDR,...",
	  "Client networks never screened: the site's own relays, partners (192.0.2.0/24, "
	  "2001:db8::/32, single addresses; commas or spaces)." },
	{ G, "dnsbl_timeout", CFG_T_DURATION, "5s", NULL, 100, MINUTES(5), NULL, GW(dnsbl_timeout_ms),
	  NULL, "duration",
	  "How long to wait for the lists' answers; a list that has not answered by then scores 0. "
	  "Below decision_timeout." },
	{ G, "blcheck_sites", CFG_T_STR, NULL, "the built-in list, see backstop(8)", 0, 0, NULL,
	  GW(blcheck_sites), NULL, "site[=filter],...",
	  "Lists that backstop blcheck asks about the site's own addresses (dnsbl_sites syntax; "
	  "weights are ignored, a negative one marks an allowlist)." },
	{ G, "blcheck_addresses", CFG_T_STR, NULL, "none", 0, 0, NULL, GW(blcheck_addresses), cidr_list_check,
	  "address,...",
	  "The site's public mail addresses that backstop blcheck checks when none are given on "
	  "its command line." },
	/* [gateway]: operations */
	{ G, "metrics_listen", CFG_T_HOSTPORTS, "", NULL, 0, 0, NULL, GW(metrics_listen), NULL,
	  "host:port,...",
	  "Addresses of the HTTP endpoint that serves Prometheus metrics at /metrics and the status "
	  "page at / (for example 127.0.0.1:9325), separated by commas or spaces; IPv6 in brackets, "
	  "port 0 picks a free port, which is logged. It has no authentication: keep it on loopback "
	  "or a management network. Empty: off. Changed at the next restart, not on reload." },
	/* [gateway]: the control socket (control.c) */
	{ G, "control_socket", CFG_T_STR, "/run/backstop/control", NULL, 0, 0, NULL, GW(control_socket),
	  config_check_socket_path, "path",
	  "Unix socket of the running daemon for backstop status, reload and cache, made as root "
	  "before privileges are dropped (a stale socket file is replaced, one another backstop "
	  "answers on is left alone). Its directory must exist (systemd's RuntimeDirectory=backstop "
	  "makes /run/backstop). Only root, the user backstop runs as and members of "
	  "control_socket_group may use it (checked with the peer's credentials as well as the file "
	  "mode). A socket that cannot be made is a warning, never a reason not to start. Empty: no "
	  "control socket." },
	{ G, "control_socket_mode", CFG_T_STR, "0660", NULL, 0, 0, NULL, GW(control_socket_mode),
	  config_check_mode, "octal mode", "Permissions of the control socket." },
	{ G, "control_socket_group", CFG_T_STR, NULL, "the group of the user backstop runs as", 0, 0,
	  NULL, GW(control_socket_group), config_check_word, "group",
	  "Group of the control socket: its members may run backstop status, reload and cache "
	  "against the daemon." },

	/* [domain NAME] */
	{ D, "deliver", CFG_T_HOSTPORTS, NULL, "none (required)", 0, 0, NULL, DOM(deliver),
	  config_check_deliver, "host:port,...",
	  "Backend mail servers for this domain, in order; IPv6 addresses in brackets ([::1]:25). "
	  "Required." },
	{ D, "deliver_policy", CFG_T_ENUM, "failover", NULL, 0, 0, e_deliver_policy,
	  DOM(deliver_policy), NULL, NULL,
	  "failover: always try the backends in order; round-robin: spread sessions over them." },
	{ D, "deliver_tls", CFG_T_ENUM, "may", NULL, 0, 0, e_deliver_tls, DOM(deliver_tls), NULL,
	  NULL, "STARTTLS towards the backends: when offered, always (else fail), or never." },
	{ D, "deliver_tls_ca", CFG_T_STR, NULL, "none", 0, 0, NULL,
	  DOM(deliver_tls_ca), config_check_file, "file",
	  "CA certificates that a backend's certificate and name are verified with when deliver_tls is "
	  "must. Unset: must still requires TLS, but the certificate is not verified." },
	{ D, "verify", CFG_T_STRLIST, "", NULL, 0, 0, NULL, DOM(verify), rcpt_spec_check,
	  "source ...",
	  "Recipient sources asked in order, separated by spaces: map:FILE, callout:HOST:PORT or "
	  "ldap:NAME (an [ldap NAME] section). Empty: every recipient is accepted." },
	{ D, "on_unavailable", CFG_T_ENUM, "defer", NULL, 0, 0, e_on_unavailable,
	  DOM(on_unavailable), NULL, NULL,
	  "When no source can answer: defer the recipient (451 4.4.3, the client retries), or accept it "
	  "(the backend's own RCPT answer then decides)." },
	{ D, "on_catchall", CFG_T_ENUM, "accept", NULL, 0, 0, e_on_catchall, DOM(on_catchall), NULL,
	  NULL, "When a source reports a catch-all (a callout server that accepts any address, a map's "
	  "@domain entry): accept the recipient, or treat the answer as unavailable." },
	{ D, "case_sensitive_local", CFG_T_BOOL, "no", NULL, 0, 0, NULL, DOM(case_sensitive_local),
	  NULL, NULL, "Compare local parts case-sensitively." },
	{ D, "recipient_delimiter", CFG_T_BUF, "", NULL, 0, 0, NULL, DOM(recipient_delimiter),
	  config_check_delimiter, "characters",
	  "Characters that start an address extension (user+tag); empty: none." },
	{ D, "positive_ttl", CFG_T_DURATION, NULL, "[gateway] positive_ttl", 1000, DAYS(365), NULL,
	  DOM(positive_ttl_ms), NULL, "duration",
	  "How long a recipient found to exist is remembered, for this domain." },
	{ D, "negative_ttl", CFG_T_DURATION, NULL, "[gateway] negative_ttl", 1000, DAYS(365), NULL,
	  DOM(negative_ttl_ms), NULL, "duration",
	  "How long a recipient found not to exist is remembered, for this domain." },
	{ D, "reject_code", CFG_T_UINT, "550", NULL, 500, 599, NULL, DOM(reject_code), NULL, "code",
	  "Reply code for a recipient that does not exist (5xx)." },
	{ D, "reject_text", CFG_T_STR, "Recipient address rejected: User unknown", NULL, 0, 0, NULL,
	  DOM(reject_text), config_check_reply_text, "text",
	  "Reply text for a recipient that does not exist." },
	{ D, "spf_fail", CFG_T_ENUM, NULL, "[gateway] spf_fail", 0, 0, e_spf_fail, DOM(spf.fail), NULL, NULL,
	  "SPF fail for recipients of this domain: reject, tag or off." },
	{ D, "spf_softfail", CFG_T_ENUM, NULL, "[gateway] spf_softfail", 0, 0, e_spf_softfail,
	  DOM(spf.softfail), NULL, NULL, "SPF softfail for recipients of this domain: tag or reject." },
	{ D, "spf_temperror", CFG_T_ENUM, NULL, "[gateway] spf_temperror", 0, 0, e_spf_temperror,
	  DOM(spf.temperror), NULL, NULL, "SPF temperror for recipients of this domain: defer or tag." },
	{ D, "spf_permerror", CFG_T_ENUM, NULL, "[gateway] spf_permerror", 0, 0, e_spf_permerror,
	  DOM(spf.permerror), NULL, NULL, "SPF permerror for recipients of this domain: tag or reject." },
	{ D, "spf_skip", CFG_T_STR, NULL, "[gateway] spf_skip", 0, 0, NULL, DOM(spf.skip), cidr_list_check,
	  "CIDR,...", "Clients not judged by SPF for recipients of this domain (replaces [gateway]'s list)." },

	/* [ldap NAME] */
	{ L, "uri", CFG_T_STRLIST, NULL, "none (required)", 0, 0, NULL, LD(uri), config_check_ldap_uri,
	  "uri ...", "LDAP servers tried in order, separated by spaces: ldap://, ldaps:// or ldapi://." },
	{ L, "starttls", CFG_T_BOOL, "no", NULL, 0, 0, NULL, LD(starttls), NULL, NULL,
	  "Use STARTTLS on ldap:// connections (and fail without it)." },
	{ L, "tls_ca", CFG_T_STR, NULL, "the system's CA store", 0, 0, NULL, LD(tls_ca),
	  config_check_file, "file", "CA certificates that the server's certificate is verified with." },
	{ L, "bind_dn", CFG_T_STR, NULL, "anonymous bind", 0, 0, NULL, LD(bind_dn), config_check_text,
	  "dn", "DN to bind as." },
	{ L, "bind_password_file", CFG_T_STR, NULL, "unset", 0, 0, NULL, LD(bind_password_file),
	  config_check_file, "file",
	  "File holding the bind password (first line); required with bind_dn." },
	{ L, "base", CFG_T_STR, NULL, "none (required)", 0, 0, NULL, LD(base), config_check_text, "dn",
	  "Search base." },
	{ L, "preset", CFG_T_ENUM, "active-directory", NULL, 0, 0, e_preset, LD(preset), NULL, NULL,
	  "Directory flavour: sets the default query and how disabled accounts are recognised." },
	{ L, "query", CFG_T_STR, NULL, "the preset's filter", 0, 0, NULL, LD(query),
	  config_check_ldap_query, "filter",
	  "Search filter; %s stands for the recipient address. Required with preset none." },
	{ L, "timeout", CFG_T_DURATION, "5s", NULL, 1, MINUTES(10), NULL, LD(timeout_ms), NULL,
	  "duration", "Time allowed for one search, connection included." },
	{ L, "connections", CFG_T_UINT, "2", NULL, 1, 100, NULL, LD(connections), NULL, "count",
	  "Connections kept open to the directory." },
	{ L, "include_disabled", CFG_T_BOOL, "no", NULL, 0, 0, NULL, LD(include_disabled), NULL, NULL,
	  "Count disabled accounts as existing recipients." },
};
#undef G
#undef D
#undef L

const size_t config_nkeys = sizeof(config_keys) / sizeof(config_keys[0]);

const char *config_section_name(enum cfg_section s)
{
	switch (s) {
	case CFG_SEC_GATEWAY: return "gateway";
	case CFG_SEC_DOMAIN: return "domain";
	case CFG_SEC_LDAP: return "ldap";
	}
	return "?";
}

void config_strlist_free(struct bs_strlist *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->items[i]);
	free(l->items);
	l->items = NULL;
	l->n = 0;
}

void config_key_format(const struct cfg_key *k, uint64_t v, char *buf, size_t bufsz)
{
	if (k->type == CFG_T_SIZE)
		cfgval_format_size(v, buf, bufsz);
	else if (k->type == CFG_T_DURATION)
		cfgval_format_duration(v, buf, bufsz);
	else if (k->type == CFG_T_UINT && k->enums && v == 0)
		snprintf(buf, bufsz, "%s", k->enums[0]);
	else
		snprintf(buf, bufsz, "%llu", (unsigned long long)v);
}

void config_key_values(const struct cfg_key *k, const char *sep, char *buf, size_t bufsz)
{
	size_t o = 0;

	buf[0] = '\0';
	for (size_t i = 0; k->enums && k->enums[i] && o < bufsz; i++) {
		int n = snprintf(buf + o, bufsz - o, "%s%s", i ? sep : "", k->enums[i]);
		o += n > 0 ? (size_t)n : 0;
	}
}

static void config_domain_free(struct bs_domain *d)
{
	cfgval_hostport_list_free(&d->deliver);
	free(d->deliver_tls_ca);
	config_strlist_free(&d->verify);
	free(d->reject_text);
	free(d->spf.skip);
}

static void config_ldap_free(struct bs_ldap *l)
{
	config_strlist_free(&l->uri);
	free(l->tls_ca);
	free(l->bind_dn);
	free(l->bind_password_file);
	free(l->base);
	free(l->query);
}

/* Free a config whatever its state (also a half-built one from the loader). */
void config_free(struct bs_config *cfg)
{
	if (!cfg)
		return;
	for (size_t i = 0; i < cfg->ndomains; i++)
		config_domain_free(&cfg->domains[i]);
	free(cfg->domains);
	for (size_t i = 0; i < cfg->nldaps; i++)
		config_ldap_free(&cfg->ldaps[i]);
	free(cfg->ldaps);
	cfgval_hostport_list_free(&cfg->listen);
	cfgval_hostport_list_free(&cfg->metrics_listen);
	cfgval_listener_list_free(&cfg->policy_listen);
	free(cfg->policy_socket_mode);
	free(cfg->policy_socket_owner);
	free(cfg->policy_socket_group);
	free(cfg->control_socket);
	free(cfg->control_socket_mode);
	free(cfg->control_socket_group);
	free(cfg->path);
	free(cfg->hostname);
	free(cfg->tls_cert);
	free(cfg->tls_key);
	free(cfg->user);
	free(cfg->cache);
	free(cfg->cache_redis_prefix);
	free(cfg->cache_redis_password_file);
	free(cfg->cache_redis_tls_ca);
	free(cfg->proxy_protocol_from);
	cidr_list_free(&cfg->proxy_from);
	free(cfg->callout_sender);
	free(cfg->dns_servers);
	free(cfg->spf_actions.skip);
	free(cfg->authserv_id);
	free(cfg->dnsbl_sites);
	free(cfg->dnsbl_skip);
	free(cfg->blcheck_sites);
	free(cfg->blcheck_addresses);
	free(cfg->harvest_limit);
	free(cfg->harvest_network_limit);
	free(cfg->gateway_lines);
	free(cfg);
}

struct bs_config *config_ref(struct bs_config *cfg)
{
	if (cfg)
		atomic_fetch_add_explicit(&cfg->refs, 1, memory_order_relaxed);
	return cfg;
}

void config_unref(struct bs_config *cfg)
{
	if (cfg && atomic_fetch_sub_explicit(&cfg->refs, 1, memory_order_acq_rel) == 1)
		config_free(cfg);
}

const struct bs_domain *config_find_domain(const struct bs_config *cfg, const char *domain)
{
	size_t lo = 0, hi = cfg->ndomains;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = strcmp(domain, cfg->domains[mid].name);
		if (c == 0)
			return &cfg->domains[mid];
		if (c < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	return NULL;
}

const struct bs_ldap *config_find_ldap(const struct bs_config *cfg, const char *name)
{
	for (size_t i = 0; i < cfg->nldaps; i++)
		if (strcmp(cfg->ldaps[i].name, name) == 0)
			return &cfg->ldaps[i];
	return NULL;
}

void config_errors_free(struct config_errors *errs)
{
	if (!errs)
		return;
	for (size_t i = 0; i < errs->n; i++)
		free(errs->msgs[i]);
	free(errs->msgs);
	errs->msgs = NULL;
	errs->n = 0;
}
