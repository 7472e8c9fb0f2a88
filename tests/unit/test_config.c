/* test_config.c - config_load: defaults of every key, every value type through the table, TTL
 * inheritance, the examples of the issues, each class of error with its FILE:LINE text, all
 * errors collected, inih's comment behaviour, look-ups, refcounts, the documentation, the
 * verify and cache specs checked by their registries' rows, and a seeded random-bytes run that
 * must not crash. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "config.h"
#include "log.h"
#include "rcpt.h"
#include "vcache.h"

#define MIN_CONF "[domain example.test]\ndeliver = 127.0.0.1:2626\n"

static struct bs_config *load(const char *text, struct config_errors *errs)
{
	return config_load_buffer("t.conf", text, strlen(text), errs);
}

static void print_errors(const struct config_errors *errs)
{
	for (size_t i = 0; i < errs->n; i++)
		fprintf(stderr, "  error: %s\n", errs->msgs[i]);
}

static struct bs_config *load_ok(const char *text)
{
	struct config_errors errs;
	struct bs_config *cfg = load(text, &errs);

	if (!cfg)
		print_errors(&errs);
	assert_non_null(cfg);
	assert_int_equal(errs.n, 0);
	return cfg;
}

/* Loading text fails, and one of the errors is exactly msg. */
static void expect_error(const char *text, const char *msg)
{
	struct config_errors errs;
	struct bs_config *cfg = load(text, &errs);
	bool found = false;

	assert_null(cfg);
	for (size_t i = 0; i < errs.n; i++)
		found = found || strcmp(errs.msgs[i], msg) == 0;
	if (!found) {
		fprintf(stderr, "  expected: %s\n", msg);
		print_errors(&errs);
	}
	assert_true(found);
	config_errors_free(&errs);
}

/* A readable temporary file; returns its path (static buffer per slot). */
static const char *temp_file(int slot)
{
	static char paths[4][64];
	int fd;

	snprintf(paths[slot], sizeof(paths[slot]), "/tmp/test_config_XXXXXX");
	fd = mkstemp(paths[slot]);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "x\n", 2), 2);
	close(fd);
	return paths[slot];
}

static void test_defaults(void **state)
{
	struct bs_config *cfg = load_ok(MIN_CONF);
	const struct bs_domain *d;

	(void)state;
	assert_int_equal(cfg->listen.n, 1);
	assert_string_equal(cfg->listen.items[0].host, "127.0.0.1");
	assert_string_equal(cfg->listen.items[0].port, "25");
	assert_non_null(cfg->hostname);
	assert_true(cfg->hostname[0] != '\0');
	assert_int_equal(cfg->workers, 0);
	assert_int_equal(cfg->max_connections, 10000);
	assert_int_equal(cfg->max_connections_per_ip, 50);
	assert_int_equal(cfg->max_message_size, 50u << 20);
	assert_int_equal(cfg->max_recipients, 100);
	assert_int_equal(cfg->max_command_line, 512);
	assert_int_equal(cfg->max_line_length, 1000);
	assert_int_equal(cfg->command_timeout_ms, 300000);
	assert_int_equal(cfg->data_timeout_ms, 180000);
	assert_int_equal(cfg->max_errors, 20);
	assert_int_equal(cfg->error_delay_after, 10);
	assert_int_equal(cfg->error_delay_ms, 1000);
	assert_int_equal(cfg->max_junk_commands, 100);
	assert_int_equal(cfg->greet_delay_ms, 0);
	assert_int_equal(cfg->pregreet, PREGREET_LOG);
	assert_null(cfg->tls_cert);
	assert_null(cfg->tls_key);
	assert_null(cfg->user);
	assert_false(cfg->bare_newline_normalise);
	assert_false(cfg->allow_routing_localparts);
	assert_string_equal(cfg->postmaster_domain, "example.test");
	assert_int_equal(cfg->log, LOG_TARGET_STDERR);
	assert_int_equal(cfg->log_level, LOG_LVL_INFO);
	assert_int_equal(cfg->shutdown_timeout_ms, 30000);
	assert_int_equal(cfg->backend_connect_timeout_ms, 10000);
	assert_int_equal(cfg->backend_command_timeout_ms, 120000);
	assert_int_equal(cfg->backend_data_timeout_ms, 300000);
	assert_int_equal(cfg->backend_retry_after_ms, 30000);
	assert_string_equal(cfg->cache, "lmdb:/var/lib/backstop/verdicts");
	assert_int_equal(cfg->cache_max_size, 256u << 20);
	assert_int_equal(cfg->positive_ttl_ms, 86400000);
	assert_int_equal(cfg->negative_ttl_ms, 300000);
	assert_int_equal(cfg->verify_timeout_ms, 20000);
	assert_int_equal(cfg->callout_max_connections, 2);
	assert_string_equal(cfg->callout_sender, "");
	assert_int_equal(cfg->callout_timeout_ms, 30000);
	assert_int_equal(cfg->nldaps, 0);

	assert_int_equal(cfg->ndomains, 1);
	d = config_find_domain(cfg, "example.test");
	assert_non_null(d);
	assert_int_equal(d->line, 1);
	assert_int_equal(d->deliver.n, 1);
	assert_string_equal(d->deliver.items[0].port, "2626");
	assert_int_equal(d->deliver_policy, DELIVER_FAILOVER);
	assert_int_equal(d->deliver_tls, DELIVER_TLS_MAY);
	assert_null(d->deliver_tls_ca);
	assert_int_equal(d->verify.n, 0);
	assert_int_equal(d->on_unavailable, ON_UNAVAILABLE_DEFER);
	assert_int_equal(d->on_catchall, ON_CATCHALL_ACCEPT);
	assert_false(d->case_sensitive_local);
	assert_string_equal(d->recipient_delimiter, "");
	assert_int_equal(d->positive_ttl_ms, 86400000);
	assert_int_equal(d->negative_ttl_ms, 300000);
	assert_int_equal(d->reject_code, 550);
	assert_string_equal(d->reject_text, "Recipient address rejected: User unknown");
	config_unref(cfg);
}

static void test_every_gateway_key(void **state)
{
	const char *cert = temp_file(0), *key = temp_file(1);
	char text[4096];
	struct bs_config *cfg;

	(void)state;
	snprintf(text, sizeof(text),
		 "[gateway]\nlisten = *:25 [::]:2525, 0.0.0.0:0\nhostname = MX.Example.Test\n"
		 "workers = 4\nmax_connections = 5\nmax_connections_per_ip = 6\n"
		 "max_message_size = 1G\nmax_recipients = 7\nmax_command_line = 1K\n"
		 "max_line_length = 2000\ncommand_timeout = 30m15s\ndata_timeout = 90\n"
		 "max_errors = 8\nmax_junk_commands = 9\ngreet_delay = 250ms\npregreet = reject\n"
		 "error_delay_after = 0\nerror_delay = 0\n"
		 "tls_cert = %s\ntls_key = \"%s\"\nuser = nobody\nbare_newline = normalise\n"
		 "allow_routing_localparts = yes\npostmaster_domain = Other.Test.\nlog = syslog\n"
		 "log_level = debug\nshutdown_timeout = 0s\nbackend_connect_timeout = 1s\n"
		 "backend_command_timeout = 2s\nbackend_data_timeout = 3s\n"
		 "backend_retry_after = 4s\ncache = memory:\ncache_max_size = 1G\n"
		 "positive_ttl = 2h\nnegative_ttl = 30s\nverify_timeout = 500ms\n"
		 "callout_max_connections = 3\ncallout_sender = probe@example.test\n"
		 "callout_timeout = 1m\n" MIN_CONF, cert, key);
	cfg = load_ok(text);
	assert_int_equal(cfg->listen.n, 3);
	assert_string_equal(cfg->listen.items[0].host, "*");
	assert_string_equal(cfg->listen.items[1].host, "::");
	assert_string_equal(cfg->listen.items[2].port, "0");
	assert_string_equal(cfg->hostname, "MX.Example.Test");
	assert_int_equal(cfg->workers, 4);
	assert_int_equal(cfg->max_connections, 5);
	assert_int_equal(cfg->max_connections_per_ip, 6);
	assert_int_equal(cfg->max_message_size, 1u << 30);
	assert_int_equal(cfg->max_recipients, 7);
	assert_int_equal(cfg->max_command_line, 1024);
	assert_int_equal(cfg->max_line_length, 2000);
	assert_int_equal(cfg->command_timeout_ms, 1815000);
	assert_int_equal(cfg->data_timeout_ms, 90000);
	assert_int_equal(cfg->max_errors, 8);
	assert_int_equal(cfg->error_delay_after, 0);
	assert_int_equal(cfg->error_delay_ms, 0);
	assert_int_equal(cfg->max_junk_commands, 9);
	assert_int_equal(cfg->greet_delay_ms, 250);
	assert_int_equal(cfg->pregreet, PREGREET_REJECT);
	assert_string_equal(cfg->tls_cert, cert);
	assert_string_equal(cfg->tls_key, key); /* quotes removed */
	assert_string_equal(cfg->user, "nobody");
	assert_true(cfg->bare_newline_normalise);
	assert_true(cfg->allow_routing_localparts);
	assert_string_equal(cfg->postmaster_domain, "other.test");
	assert_int_equal(cfg->log, LOG_TARGET_SYSLOG);
	assert_int_equal(cfg->log_level, LOG_LVL_DEBUG);
	assert_int_equal(cfg->shutdown_timeout_ms, 0);
	assert_int_equal(cfg->backend_connect_timeout_ms, 1000);
	assert_int_equal(cfg->backend_command_timeout_ms, 2000);
	assert_int_equal(cfg->backend_data_timeout_ms, 3000);
	assert_int_equal(cfg->backend_retry_after_ms, 4000);
	assert_string_equal(cfg->cache, "memory:");
	assert_int_equal(cfg->cache_max_size, 1u << 30);
	assert_int_equal(cfg->positive_ttl_ms, 7200000);
	assert_int_equal(cfg->negative_ttl_ms, 30000);
	assert_int_equal(cfg->verify_timeout_ms, 500);
	assert_int_equal(cfg->callout_max_connections, 3);
	assert_string_equal(cfg->callout_sender, "probe@example.test");
	assert_int_equal(cfg->callout_timeout_ms, 60000);
	config_unref(cfg);
	unlink(cert);
	unlink(key);
}

static void test_every_domain_key(void **state)
{
	const char *ca = temp_file(0);
	char text[2048];
	struct bs_config *cfg;
	const struct bs_domain *d;

	(void)state;
	snprintf(text, sizeof(text),
		 "[domain Example.TEST.]\ndeliver = [::1]:25, 192.0.2.7:2525 backend.test:26\n"
		 "deliver_policy = round-robin\ndeliver_tls = must\ndeliver_tls_ca = %s\n"
		 "verify = map:/etc/backstop/rcpt  callout:mx.example.test:25 ldap:corp\n"
		 "on_unavailable = accept\non_catchall = unavailable\ncase_sensitive_local = true\n"
		 "recipient_delimiter = +-\npositive_ttl = 1d\nnegative_ttl = 5m\n"
		 "reject_code = 551\nreject_text = No such user; really\n"
		 "[ldap corp]\nuri = ldap://127.0.0.1:389\nbase = dc=example\n",
		 ca);
	cfg = load_ok(text);
	d = config_find_domain(cfg, "example.test");
	assert_non_null(d);
	assert_int_equal(d->deliver.n, 3);
	assert_string_equal(d->deliver.items[0].host, "::1");
	assert_string_equal(d->deliver.items[2].host, "backend.test");
	assert_int_equal(d->deliver_policy, DELIVER_ROUND_ROBIN);
	assert_int_equal(d->deliver_tls, DELIVER_TLS_MUST);
	assert_string_equal(d->deliver_tls_ca, ca);
	assert_int_equal(d->verify.n, 3);
	assert_string_equal(d->verify.items[0], "map:/etc/backstop/rcpt");
	assert_string_equal(d->verify.items[1], "callout:mx.example.test:25");
	assert_string_equal(d->verify.items[2], "ldap:corp");
	assert_int_equal(d->on_unavailable, ON_UNAVAILABLE_ACCEPT);
	assert_int_equal(d->on_catchall, ON_CATCHALL_UNAVAILABLE);
	assert_true(d->case_sensitive_local);
	assert_string_equal(d->recipient_delimiter, "+-");
	assert_int_equal(d->positive_ttl_ms, 86400000);
	assert_int_equal(d->negative_ttl_ms, 300000);
	assert_int_equal(d->reject_code, 551);
	/* "; really" is not a comment: inih wants white space before an inline ';' ... */
	assert_string_equal(d->reject_text, "No such user; really");
	config_unref(cfg);
	unlink(ca);
}

static void test_ldap_keys(void **state)
{
	const char *ca = temp_file(0), *secret = temp_file(1);
	char text[2048];
	struct bs_config *cfg;
	const struct bs_ldap *l;

	(void)state;
	/* the example of the LDAP issue, with files that exist */
	snprintf(text, sizeof(text),
		 MIN_CONF "verify = ldap:corp\n"
		 "[ldap corp]\n"
		 "uri = ldaps://dc1.corp.example ldap://dc2.corp.example   ; tried in order\n"
		 "starttls = yes\n"
		 "tls_ca = %s\n"
		 "bind_dn = CN=backstop,OU=Service,DC=corp,DC=example\n"
		 "bind_password_file = %s\n"
		 "base = DC=corp,DC=example\n"
		 "preset = active-directory\n"
		 "query = (|(proxyAddresses=smtp:%%s)(mail=%%s))\n"
		 "timeout = 5s\n"
		 "connections = 2\n"
		 "[ldap other]\nuri = ldapi://%%2fvar%%2frun%%2fslapd\nbase = dc=x\npreset = none\n"
		 "query = (mail=%%s)\ninclude_disabled = yes\ntimeout = 100ms\nconnections = 9\n",
		 ca, secret);
	cfg = load_ok(text);
	assert_int_equal(cfg->nldaps, 2);
	l = config_find_ldap(cfg, "corp");
	assert_non_null(l);
	assert_int_equal(l->line, 4);
	assert_int_equal(l->uri.n, 2);
	assert_string_equal(l->uri.items[0], "ldaps://dc1.corp.example");
	assert_string_equal(l->uri.items[1], "ldap://dc2.corp.example");
	assert_true(l->starttls);
	assert_string_equal(l->tls_ca, ca);
	assert_string_equal(l->bind_dn, "CN=backstop,OU=Service,DC=corp,DC=example");
	assert_string_equal(l->bind_password_file, secret);
	assert_string_equal(l->base, "DC=corp,DC=example");
	assert_int_equal(l->preset, LDAP_PRESET_ACTIVE_DIRECTORY);
	assert_string_equal(l->query, "(|(proxyAddresses=smtp:%s)(mail=%s))");
	assert_int_equal(l->timeout_ms, 5000);
	assert_int_equal(l->connections, 2);
	assert_false(l->include_disabled);
	l = config_find_ldap(cfg, "other");
	assert_non_null(l);
	assert_int_equal(l->preset, LDAP_PRESET_NONE);
	assert_true(l->include_disabled);
	assert_int_equal(l->timeout_ms, 100);
	assert_int_equal(l->connections, 9);
	assert_null(l->bind_dn);
	assert_null(config_find_ldap(cfg, "nope"));
	config_unref(cfg);

	/* defaults */
	cfg = load_ok(MIN_CONF "[ldap d]\nuri = ldap://h\nbase = dc=x\n");
	l = config_find_ldap(cfg, "d");
	assert_false(l->starttls);
	assert_null(l->tls_ca);
	assert_null(l->query);
	assert_int_equal(l->preset, LDAP_PRESET_ACTIVE_DIRECTORY);
	assert_int_equal(l->timeout_ms, 5000);
	assert_int_equal(l->connections, 2);
	assert_false(l->include_disabled);
	config_unref(cfg);
	unlink(ca);
	unlink(secret);
}

static void test_ttl_inheritance(void **state)
{
	struct bs_config *cfg;

	(void)state;
	/* [gateway] after the domains still gives them its TTLs */
	cfg = load_ok("[domain a.test]\ndeliver = h:25\n"
		      "[domain b.test]\ndeliver = h:25\npositive_ttl = 10m\n"
		      "[domain c.test]\ndeliver = h:25\nnegative_ttl = 45s\n"
		      "[gateway]\npositive_ttl = 3h\nnegative_ttl = 2m\n");
	assert_int_equal(config_find_domain(cfg, "a.test")->positive_ttl_ms, 3 * 3600000);
	assert_int_equal(config_find_domain(cfg, "a.test")->negative_ttl_ms, 120000);
	assert_int_equal(config_find_domain(cfg, "b.test")->positive_ttl_ms, 600000);
	assert_int_equal(config_find_domain(cfg, "b.test")->negative_ttl_ms, 120000);
	assert_int_equal(config_find_domain(cfg, "c.test")->positive_ttl_ms, 3 * 3600000);
	assert_int_equal(config_find_domain(cfg, "c.test")->negative_ttl_ms, 45000);
	/* postmaster_domain is the first domain in file order, not in sorted order */
	config_unref(cfg);
	cfg = load_ok("[domain z.test]\ndeliver = h:25\n[domain a.test]\ndeliver = h:25\n");
	assert_string_equal(cfg->postmaster_domain, "z.test");
	config_unref(cfg);
}

static void test_issue_example(void **state)
{
	const char *cert = temp_file(0), *key = temp_file(1);
	char text[4096];
	struct bs_config *cfg;

	(void)state;
	snprintf(text, sizeof(text),
		 "[gateway]\n"
		 "listen = 127.0.0.1:2525, [::1]:2525     ; one or more host:port\n"
		 "hostname = mx.example.test              ; banner and EHLO name\n"
		 "workers = auto\n"
		 "max_connections = 10000\n"
		 "max_connections_per_ip = 50\n"
		 "max_message_size = 50M\n"
		 "max_recipients = 100\n"
		 "tls_cert = %s ; STARTTLS offered when both are set\n"
		 "tls_key = %s\n"
		 "user = backstop                         ; when started as root\n"
		 "\n"
		 "[domain example.test]                   ; one section per accepted domain\n"
		 "deliver = 127.0.0.1:2626                ; backend(s), used by in-line delivery\n",
		 cert, key);
	cfg = load_ok(text);
	assert_int_equal(cfg->listen.n, 2);
	assert_string_equal(cfg->listen.items[0].host, "127.0.0.1");
	assert_string_equal(cfg->listen.items[0].port, "2525");
	assert_string_equal(cfg->listen.items[1].host, "::1");
	assert_string_equal(cfg->hostname, "mx.example.test");
	assert_string_equal(cfg->user, "backstop");
	assert_string_equal(cfg->tls_cert, cert);
	assert_int_equal(cfg->workers, 0);
	assert_int_equal(cfg->ndomains, 1);
	assert_string_equal(cfg->domains[0].name, "example.test");
	assert_int_equal(cfg->domains[0].line, 13);
	assert_string_equal(cfg->domains[0].deliver.items[0].host, "127.0.0.1");
	assert_string_equal(cfg->domains[0].deliver.items[0].port, "2626");
	config_unref(cfg);
	unlink(cert);
	unlink(key);
}

static void test_domains_lookup(void **state)
{
	char *text = malloc(200 * 64);
	size_t o = 0;
	struct bs_config *cfg;
	char name[64];

	(void)state;
	o += (size_t)sprintf(text + o, "[domain [192.0.2.1]]\ndeliver = h:25\n");
	o += (size_t)sprintf(text + o, "[domain [IPv6:2001:DB8::1]] ; v6 literal\ndeliver = h:25\n");
	for (int i = 199; i >= 2; i--)
		o += (size_t)sprintf(text + o, "[domain d%d.Test]\ndeliver = h:25\n", i);
	cfg = load_ok(text);
	assert_int_equal(cfg->ndomains, 200);
	for (size_t i = 1; i < cfg->ndomains; i++)
		assert_true(strcmp(cfg->domains[i - 1].name, cfg->domains[i].name) < 0);
	for (int i = 2; i < 200; i++) {
		snprintf(name, sizeof(name), "d%d.test", i);
		assert_non_null(config_find_domain(cfg, name));
		assert_string_equal(config_find_domain(cfg, name)->name, name);
	}
	assert_non_null(config_find_domain(cfg, "[192.0.2.1]"));
	assert_null(config_find_domain(cfg, "d1.test"));
	assert_null(config_find_domain(cfg, "D2.test")); /* callers normalise first */
	assert_null(config_find_domain(cfg, ""));
	assert_null(config_find_domain(cfg, "zzz"));
	assert_string_equal(cfg->postmaster_domain, "[192.0.2.1]");
	config_unref(cfg);
	free(text);
}

static void test_refcount(void **state)
{
	struct bs_config *cfg = load_ok(MIN_CONF);

	(void)state;
	assert_ptr_equal(config_ref(cfg), cfg);
	assert_int_equal(atomic_load(&cfg->refs), 2);
	config_unref(cfg);
	assert_int_equal(atomic_load(&cfg->refs), 1);
	config_unref(cfg); /* freed: ASan reports a leak or a double free otherwise */
	config_unref(NULL);
}

static void test_errors_syntax(void **state)
{
	(void)state;
	expect_error("[gateway]\nmax_recipients\n" MIN_CONF, "t.conf:2: expected 'key = value'");
	expect_error("listen = h:1\n" MIN_CONF,
		     "t.conf:1: 'listen' outside any section: start with [gateway], [domain NAME] "
		     "or [ldap NAME]");
	expect_error(MIN_CONF "[smtp]\nfoo = 1\n",
		     "t.conf:3: unknown section [smtp]: expected [gateway], [domain NAME] or "
		     "[ldap NAME]");
	expect_error(MIN_CONF "[gateway x]\n",
		     "t.conf:3: unknown section [gateway x]: expected [gateway], [domain NAME] or "
		     "[ldap NAME]");
	expect_error(MIN_CONF "[domain]\n",
		     "t.conf:3: unknown section [domain]: expected [gateway], [domain NAME] or "
		     "[ldap NAME]");
	expect_error(MIN_CONF "[gateway\n", "t.conf:3: section header without its closing ']'");
	expect_error(MIN_CONF "[gateway] x\n", "t.conf:3: unexpected text after the section header");
	expect_error(MIN_CONF "[domain bad..name]\ndeliver = h:25\n",
		     "t.conf:3: [domain bad..name]: not a valid domain name");
	expect_error(MIN_CONF "[ldap a/b]\n",
		     "t.conf:3: [ldap a/b]: an LDAP section name is 1-63 letters, digits, '_', '.' "
		     "or '-'");
	expect_error(MIN_CONF "[gateway]\nmax_recipient = 5\n",
		     "t.conf:4: unknown key 'max_recipient' in [gateway]");
	expect_error(MIN_CONF "reject_cod = 550\n", "t.conf:3: unknown key 'reject_cod' in [domain]");
	expect_error(MIN_CONF "listen = h:25\n", "t.conf:3: unknown key 'listen' in [domain]");
	expect_error(MIN_CONF "= 5\n", "t.conf:3: missing key name before '=' in [domain]");
	expect_error(MIN_CONF "deliver = h:26\n",
		     "t.conf:3: duplicate key 'deliver' (first set at line 2)");
	expect_error("[gateway]\n[gateway]\n" MIN_CONF, "t.conf:2: duplicate [gateway] (first at line 1)");
	expect_error(MIN_CONF "\n[domain EXAMPLE.test.]\ndeliver = h:25\n",
		     "t.conf:4: duplicate [domain example.test] (first at line 1)");
	expect_error(MIN_CONF "[ldap a]\nuri = ldap://h\nbase = x\n[ldap a]\n",
		     "t.conf:6: duplicate [ldap a] (first at line 3)");
}

static void test_errors_values(void **state)
{
	(void)state;
	expect_error("[gateway]\nmax_message_size = 50X\n" MIN_CONF,
		     "t.conf:2: max_message_size = 50X: expected a size: a number with an optional "
		     "K, M or G suffix");
	expect_error("[gateway]\nmax_message_size = 10\n" MIN_CONF,
		     "t.conf:2: max_message_size = 10: out of range (1K to 64G)");
	expect_error("[gateway]\ncommand_timeout = 2h\n" MIN_CONF,
		     "t.conf:2: command_timeout = 2h: out of range (1ms to 1h)");
	expect_error("[gateway]\ncommand_timeout = soon\n" MIN_CONF,
		     "t.conf:2: command_timeout = soon: expected a number");
	expect_error("[gateway]\nworkers = many\n" MIN_CONF,
		     "t.conf:2: workers = many: expected a number");
	expect_error("[gateway]\nmax_recipients = 0\n" MIN_CONF,
		     "t.conf:2: max_recipients = 0: out of range (1 to 100000)");
	expect_error("[gateway]\npregreet = drop\n" MIN_CONF,
		     "t.conf:2: pregreet = drop: not one of the allowed values: log, reject");
	expect_error("[gateway]\nallow_routing_localparts = si\n" MIN_CONF,
		     "t.conf:2: allow_routing_localparts = si: expected yes or no");
	expect_error("[gateway]\nlisten = ::1:25\n" MIN_CONF,
		     "t.conf:2: listen = ::1:25: an IPv6 address needs brackets: [::1]:25");
	expect_error("[gateway]\nhostname = -bad-\n" MIN_CONF,
		     "t.conf:2: hostname = -bad-: not a valid host name");
	expect_error("[gateway]\ntls_cert = /nonexistent/cert.pem\ntls_key = /nonexistent/k\n" MIN_CONF,
		     "t.conf:2: tls_cert = /nonexistent/cert.pem: file not found");
	expect_error("[gateway]\ncache = redis:x\n" MIN_CONF,
		     "t.conf:2: cache = redis:x: expected redis://HOST:PORT/DB or rediss://HOST:PORT/DB");
	expect_error("[gateway]\ncache = nosql:x\n" MIN_CONF,
		     "t.conf:2: cache = nosql:x: expected lmdb:/DIRECTORY, memory:, redis://HOST:PORT/DB, "
		     "rediss://HOST:PORT/DB or redis+sentinel://HOST:PORT,.../MASTER/DB");
	expect_error("[gateway]\ncallout_sender = nobody\n" MIN_CONF,
		     "t.conf:2: callout_sender = nobody: expected an address local@domain, or "
		     "nothing for the null sender");
	expect_error(MIN_CONF "reject_code = 450\n", "t.conf:3: reject_code = 450: out of range (500 to 599)");
	expect_error(MIN_CONF "reject_text = \"\"\n", "t.conf:3: reject_text = \\\"\\\": must not be empty");
	expect_error(MIN_CONF "recipient_delimiter = +@\n",
		     "t.conf:3: recipient_delimiter = +@: delimiters must be printable characters "
		     "other than @ and \"");
	expect_error(MIN_CONF "recipient_delimiter = +-=_.,/~\n",
		     "t.conf:3: recipient_delimiter = +-=_.,/~: too long (at most 7 characters)");
	expect_error("[domain a.test]\ndeliver = *:25\n",
		     "t.conf:2: deliver = *:25: a backend needs a host name or address, not *");
	expect_error("[domain a.test]\ndeliver = h:0\n",
		     "t.conf:2: deliver = h:0: a backend needs a port other than 0");
	expect_error(MIN_CONF "verify = map:\n",
		     "t.conf:3: verify = map:: 'map:': map: needs a file name "
		     "(map:/etc/backstop/recipients)");
	expect_error(MIN_CONF "verify = callout:host\n",
		     "t.conf:3: verify = callout:host: 'callout:host': callout: needs one HOST:PORT "
		     "(callout:mx.example:25)");
	expect_error(MIN_CONF "verify = file:/x\n",
		     "t.conf:3: verify = file:/x: 'file:/x': expected map:FILE, callout:HOST:PORT or "
		     "ldap:NAME");
	expect_error(MIN_CONF "[ldap a]\nuri = http://x\nbase = x\n",
		     "t.conf:4: uri = http://x: 'http://x': expected an ldap://, ldaps:// or ldapi:// "
		     "URI");
	expect_error(MIN_CONF "[ldap a]\nuri = ldap://x\nbase = x\nquery = (mail=foo)\n",
		     "t.conf:6: query = (mail=foo): the query needs %s where the recipient address "
		     "goes");
	expect_error(MIN_CONF "[ldap a]\nuri = ldap://x\nbase = x\nquery = (mail=%s\n",
		     "t.conf:6: query = (mail=%s: expected an LDAP filter in balanced parentheses");
}

static void test_errors_validation(void **state)
{
	const char *cert = temp_file(0);
	char text[512];

	(void)state;
	expect_error("", "t.conf:0: no [domain NAME] section: at least one accepted domain is needed");
	expect_error("[gateway]\nmax_recipients = 5\n",
		     "t.conf:0: no [domain NAME] section: at least one accepted domain is needed");
	snprintf(text, sizeof(text), "[gateway]\n\ntls_cert = %s\n" MIN_CONF, cert);
	expect_error(text, "t.conf:3: tls_cert is set but tls_key is not: set both or neither");
	snprintf(text, sizeof(text), "[gateway]\ntls_key = %s\n" MIN_CONF, cert);
	expect_error(text, "t.conf:2: tls_key is set but tls_cert is not: set both or neither");
	expect_error("[domain a.test]\nreject_code = 551\n",
		     "t.conf:1: [domain a.test] has no deliver = host:port");
	expect_error(MIN_CONF "verify = map:/x ldap:corp\n",
		     "t.conf:3: verify = ldap:corp: there is no [ldap corp] section");
	expect_error(MIN_CONF "[ldap a]\nbase = x\n", "t.conf:3: [ldap a] has no uri");
	expect_error(MIN_CONF "[ldap a]\nuri = ldap://h\n", "t.conf:3: [ldap a] has no base");
	expect_error(MIN_CONF "[ldap a]\nuri = ldap://h\nbase = x\npreset = none\n",
		     "t.conf:6: preset = none needs a query");
	expect_error(MIN_CONF "[ldap a]\nuri = ldap://h\nbase = x\nbind_dn = cn=x\n",
		     "t.conf:6: bind_dn needs bind_password_file");
	snprintf(text, sizeof(text), MIN_CONF "[ldap a]\nuri = ldap://h\nbase = x\n"
		 "bind_password_file = %s\n", cert);
	expect_error(text, "t.conf:6: bind_password_file is set but bind_dn is not");
	unlink(cert);
}

/* Why the registry refuses spec ("" if it accepts it). */
static const char *rcpt_why(const char *spec)
{
	const char *why = "";
	return rcpt_spec_check(spec, &why) == 0 ? "" : why;
}

static const char *vcache_why(const char *spec)
{
	const char *why = "";
	return vcache_spec_check(spec, &why) == 0 ? "" : why;
}

/* A source type registered by the test: its row, not the config module, decides its specs. */
static int fake_check_spec(const char *arg, const char **why)
{
	if (strcmp(arg, "good") == 0)
		return 0;
	*why = "fake: only fake:good";
	return -1;
}

static int fake_check_refs(const char *arg, const struct bs_config *cfg, char *why, size_t whysz)
{
	snprintf(why, whysz, "fake %s: %zu domains, none will do", arg, cfg->ndomains);
	return -1;
}

static const struct rcpt_source_type fake_type = {
	.prefix = "fake", .syntax = "fake:good", .check_spec = fake_check_spec,
	.check_refs = fake_check_refs,
};

static void test_specs_by_registry(void **state)
{
	(void)state;
	/* each source type's row */
	assert_string_equal(rcpt_why("map:/etc/backstop/rcpt"), "");
	assert_string_equal(rcpt_why("map:"), "map: needs a file name (map:/etc/backstop/recipients)");
	assert_string_equal(rcpt_why("callout:mx.example:25"), "");
	assert_string_equal(rcpt_why("callout:[::1]:25"), "");
	for (const char *bad = "callout:host\0callout:*:25\0callout:h:0\0callout:a:25,b:25\0callout:\0";
	     *bad; bad += strlen(bad) + 1)
		assert_string_equal(rcpt_why(bad), "callout: needs one HOST:PORT (callout:mx.example:25)");
	assert_string_equal(rcpt_why("ldap:corp-1.x_y"), "");
	assert_string_equal(rcpt_why("ldap:a/b"),
			    "an LDAP section name is 1-63 letters, digits, '_', '.' or '-'");
	assert_string_equal(rcpt_why("ldap:"),
			    "an LDAP section name is 1-63 letters, digits, '_', '.' or '-'");
	/* no row: the known ones, from the rows */
	for (const char *bad = "file:/x\0map\0:x\0\0"; *bad; bad += strlen(bad) + 1)
		assert_string_equal(rcpt_why(bad), "expected map:FILE, callout:HOST:PORT or ldap:NAME");

	/* each cache store's row */
	assert_string_equal(vcache_why("lmdb:/var/lib/backstop/verdicts"), "");
	assert_string_equal(vcache_why("memory:"), "");
	for (const char *bad = "lmdb:\0lmdb:relative/dir\0lmdb:/a b\0"; *bad; bad += strlen(bad) + 1)
		assert_string_equal(vcache_why(bad), "lmdb: needs an absolute directory name, without "
						     "spaces (lmdb:/var/lib/backstop/verdicts)");
	assert_string_equal(vcache_why("memory:100"), "memory: takes nothing after the colon");
	for (const char *bad = "nosql:x\0memory\0"; *bad; bad += strlen(bad) + 1)
		assert_string_equal(vcache_why(bad), "expected lmdb:/DIRECTORY, memory:, redis://HOST:PORT/DB, "
						     "rediss://HOST:PORT/DB or redis+sentinel://HOST:PORT,.../MASTER/DB");
	/* the Redis rows: syntax only, nothing resolved or connected */
	for (const char *ok = "redis://127.0.0.1:6379/0\0redis://redis.example\0rediss://r.example:6380/2\0"
			      "redis://[::1]:6379\0redis+sentinel://10.0.0.1:26379,10.0.0.2:26379/mymaster/1\0"
			      "redis+sentinel://s1/mymaster\0"; *ok; ok += strlen(ok) + 1)
		assert_string_equal(vcache_why(ok), "");
	for (const char *bad = "redis:x\0redis://\0redis://h:1/x\0redis://a,b:1/0\0redis://u@h:1/0\0"; *bad;
	     bad += strlen(bad) + 1)
		assert_string_equal(vcache_why(bad), "expected redis://HOST:PORT/DB or rediss://HOST:PORT/DB");
	for (const char *bad = "redis+sentinel://h:1\0redis+sentinel://h:1/\0redis+sentinel://h:1/m/x\0"; *bad;
	     bad += strlen(bad) + 1)
		assert_string_equal(vcache_why(bad), "expected redis+sentinel://HOST:PORT,HOST:PORT/MASTERNAME/DB");

	/* through the config, with FILE:LINE */
	expect_error("[gateway]\ncache = lmdb:verdicts\n" MIN_CONF,
		     "t.conf:2: cache = lmdb:verdicts: lmdb: needs an absolute directory name, without "
		     "spaces (lmdb:/var/lib/backstop/verdicts)");
	expect_error("[gateway]\ncache = memory:5\n" MIN_CONF,
		     "t.conf:2: cache = memory:5: memory: takes nothing after the colon");
	expect_error(MIN_CONF "verify = callout:*:25\n",
		     "t.conf:3: verify = callout:*:25: 'callout:*:25': callout: needs one HOST:PORT "
		     "(callout:mx.example:25)");
	expect_error(MIN_CONF "verify = ldap:a/b\n",
		     "t.conf:3: verify = ldap:a/b: 'ldap:a/b': an LDAP section name is 1-63 letters, "
		     "digits, '_', '.' or '-'");

	/* a row registered later is asked the same way, for its syntax and its references */
	rcpt_type_register_extra(&fake_type);
	expect_error(MIN_CONF "verify = fake:bad\n",
		     "t.conf:3: verify = fake:bad: 'fake:bad': fake: only fake:good");
	expect_error(MIN_CONF "verify = map:/x fake:good\n",
		     "t.conf:3: verify = fake:good: fake good: 1 domains, none will do");
}

static void test_errors_lines(void **state)
{
	char text[1024];
	struct config_errors errs;

	(void)state;
	/* a line longer than inih's buffer is one error, not two half-lines */
	snprintf(text, sizeof(text), MIN_CONF "reject_text = %0300d\nmax_recipients = 5\n", 0);
	expect_error(text, "t.conf:3: line too long (at most 198 characters)");
	/* the remainder of the long line was not parsed as another line */
	assert_null(load(text, &errs));
	assert_int_equal(errs.n, 2); /* the long line, and max_recipients is not a domain key */
	config_errors_free(&errs);
	/* NUL byte */
	memcpy(text, MIN_CONF "x\0y = 1\n", sizeof(MIN_CONF "x\0y = 1\n"));
	assert_null(config_load_buffer("t.conf", text, sizeof(MIN_CONF "x\0y = 1\n") - 1, &errs));
	assert_int_equal(errs.n, 1);
	assert_string_equal(errs.msgs[0], "t.conf:3: NUL byte in line");
	config_errors_free(&errs);
	/* an indented line is a key of its own, not a continuation of the previous value */
	expect_error(MIN_CONF "   deliver = h:25\n", "t.conf:3: duplicate key 'deliver' (first set at line 2)");
	/* CRLF line ends, a BOM, # and ; comments are fine */
	{
		struct bs_config *cfg = load_ok("\xEF\xBB\xBF# comment\r\n; other\r\n[gateway]\r\n"
						"max_recipients = 7\r\n" MIN_CONF);
		assert_int_equal(cfg->max_recipients, 7);
		config_unref(cfg);
	}
}

static void test_errors_all_collected(void **state)
{
	struct config_errors errs;

	(void)state;
	assert_null(load("[gateway]\nmax_recipients = x\nfoo = 1\nmax_errors = 0\nnope\n"
			 "[domain a.test]\n[bogus]\nbar = 2\n[ldap l]\n", &errs));
	assert_int_equal(errs.n, 8);
	assert_string_equal(errs.msgs[0], "t.conf:2: max_recipients = x: expected a number");
	assert_string_equal(errs.msgs[1], "t.conf:3: unknown key 'foo' in [gateway]");
	assert_string_equal(errs.msgs[2], "t.conf:4: max_errors = 0: out of range (1 to 100000)");
	assert_string_equal(errs.msgs[3], "t.conf:5: expected 'key = value'");
	assert_string_equal(errs.msgs[4], "t.conf:7: unknown section [bogus]: expected [gateway], "
			    "[domain NAME] or [ldap NAME]");
	/* keys of a bad section are skipped silently: no error for line 8 */
	assert_string_equal(errs.msgs[5], "t.conf:6: [domain a.test] has no deliver = host:port");
	assert_string_equal(errs.msgs[6], "t.conf:9: [ldap l] has no uri");
	assert_string_equal(errs.msgs[7], "t.conf:9: [ldap l] has no base");
	config_errors_free(&errs);
	assert_int_equal(errs.n, 0);

	assert_null(config_load("/nonexistent/backstop.conf", &errs));
	assert_int_equal(errs.n, 1);
	assert_string_equal(errs.msgs[0], "/nonexistent/backstop.conf:0: cannot open: No such file "
			    "or directory");
	config_errors_free(&errs);
	assert_null(config_load("/tmp", &errs));
	assert_int_equal(errs.n, 1);
	config_errors_free(&errs);
}

static void test_from_file(void **state)
{
	char path[] = "/tmp/test_config_file_XXXXXX";
	int fd = mkstemp(path);
	struct config_errors errs;
	struct bs_config *cfg;
	static const char text[] = "[gateway]\nlisten = 127.0.0.1:0\n" MIN_CONF;

	(void)state;
	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, sizeof(text) - 1), (ssize_t)sizeof(text) - 1);
	close(fd);
	cfg = config_load(path, &errs);
	assert_non_null(cfg);
	assert_string_equal(cfg->path, path);
	assert_string_equal(cfg->listen.items[0].port, "0");
	config_unref(cfg);
	unlink(path);
}

static void test_describe(void **state)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f;

	(void)state;
	f = open_memstream(&buf, &len);
	config_describe(f, CONFIG_DOC_TEXT);
	fclose(f);
	assert_non_null(strstr(buf, "[gateway]\n  listen = host:port,...\n"));
	assert_non_null(strstr(buf, "  max_message_size = size\n"));
	assert_non_null(strstr(buf, "Default: 50M. Range: 1K to 64G."));
	assert_non_null(strstr(buf, "  pregreet = log | reject\n"));
	assert_non_null(strstr(buf, "  workers = count | auto\n"));
	assert_non_null(strstr(buf, "[domain NAME]\n  deliver = "));
	assert_non_null(strstr(buf, "Default: [gateway] positive_ttl."));
	assert_non_null(strstr(buf, "[ldap NAME]\n  uri = "));
	assert_non_null(strstr(buf, "  include_disabled = yes | no\n"));
	free(buf);

	f = open_memstream(&buf, &len);
	config_describe(f, CONFIG_DOC_MDOC);
	fclose(f);
	assert_non_null(strstr(buf, ".Ss Keys of [gateway]\n.Bl -tag -width Ds\n.It Ic listen No = Ar "
				    "host:port,...\n"));
	assert_non_null(strstr(buf, ".Ql \"127.0.0.1:25\" .\n"));
	assert_non_null(strstr(buf, ".It Ic callout_timeout No = Ar duration\n"));
	assert_non_null(strstr(buf, ".It Ic include_disabled No = Ar yes | no\n"));
	assert_null(strstr(buf, "\n.\n"));
	free(buf);
}

/* Random bytes, and random mutations of a valid file: never a crash, and a config that loads
 * always has what the rest of backstop relies on. Seeded and bounded. */
static void test_random_input(void **state)
{
	static const char base[] = "[gateway]\nlisten = 127.0.0.1:0, [::1]:0 ; c\nworkers = 2\n"
				   "max_message_size = 10M\ncommand_timeout = 1m30s\n"
				   "[domain [192.0.2.1]]\ndeliver = h:25\nverify = ldap:a map:/x\n"
				   "[ldap a]\nuri = ldap://h\nbase = x\nquery = (mail=%s)\n";
	static const char alphabet[] = "[]=:;# \n\r\t\0ab1%,.\"\\\xff";
	char buf[1024];
	struct config_errors errs;
	unsigned seed = 12345;

	(void)state;
	for (int iter = 0; iter < 3000; iter++) {
		size_t len;
		if (iter % 2) {
			len = (size_t)rand_r(&seed) % sizeof(buf);
			for (size_t i = 0; i < len; i++)
				buf[i] = (char)(iter % 4 == 1 ? rand_r(&seed)
						: alphabet[rand_r(&seed) % (sizeof(alphabet) - 1)]);
		} else {
			len = sizeof(base) - 1;
			memcpy(buf, base, len);
			for (int m = rand_r(&seed) % 4; m >= 0; m--)
				buf[(size_t)rand_r(&seed) % len] =
					alphabet[rand_r(&seed) % (sizeof(alphabet) - 1)];
		}
		char *exact = malloc(len ? len : 1); /* ASan sees any read past the end */
		memcpy(exact, buf, len);
		struct bs_config *cfg = config_load_buffer("r.conf", exact, len, &errs);
		free(exact);
		if (cfg) {
			assert_int_equal(errs.n, 0);
			assert_true(cfg->listen.n > 0 && cfg->ndomains > 0 && cfg->hostname);
			for (size_t i = 0; i < cfg->ndomains; i++)
				assert_ptr_equal(config_find_domain(cfg, cfg->domains[i].name),
						 &cfg->domains[i]);
			config_unref(cfg);
		} else {
			assert_true(errs.n > 0);
			for (size_t i = 0; i < errs.n; i++)
				assert_int_equal(strncmp(errs.msgs[i], "r.conf:", 7), 0);
		}
		config_errors_free(&errs);
	}
}

/* The policy service's keys; listen may be empty only when policy_listen is set. */
static void test_policy_keys(void **state)
{
	struct bs_config *cfg;

	(void)state;
	cfg = load_ok(MIN_CONF);
	assert_int_equal(cfg->policy_listen.n, 0);
	assert_string_equal(cfg->policy_socket_mode, "0660");
	assert_null(cfg->policy_socket_owner);
	assert_int_equal(cfg->policy_timeout_ms, 600000);
	assert_int_equal(cfg->policy_max_connections, 1000);
	config_unref(cfg);
	cfg = load_ok("[gateway]\nlisten =\npolicy_listen = 127.0.0.1:10040, unix:/var/spool/postfix/private/bp"
		      " [::1]:0\npolicy_socket_mode = 600\npolicy_socket_owner = postfix\n"
		      "policy_socket_group = postfix\npolicy_timeout = 6m\npolicy_max_connections = 5\n" MIN_CONF);
	assert_int_equal(cfg->listen.n, 0);
	assert_int_equal(cfg->policy_listen.n, 3);
	assert_false(cfg->policy_listen.items[0].is_unix);
	assert_string_equal(cfg->policy_listen.items[0].inet.port, "10040");
	assert_true(cfg->policy_listen.items[1].is_unix);
	assert_string_equal(cfg->policy_listen.items[1].path, "/var/spool/postfix/private/bp");
	assert_string_equal(cfg->policy_listen.items[2].inet.host, "::1");
	assert_string_equal(cfg->policy_socket_mode, "600");
	assert_string_equal(cfg->policy_socket_group, "postfix");
	assert_int_equal(cfg->policy_timeout_ms, 360000);
	assert_int_equal(cfg->policy_max_connections, 5);
	config_unref(cfg);
	expect_error("[gateway]\nlisten =\n" MIN_CONF,
		     "t.conf:2: no listen address and no policy_listen: nothing to serve");
	expect_error("[gateway]\npolicy_listen = unix:relative/path\n" MIN_CONF,
		     "t.conf:2: policy_listen = unix:relative/path: a unix socket needs an absolute path (unix:/path)");
	expect_error("[gateway]\npolicy_socket_mode = 0999\n" MIN_CONF,
		     "t.conf:2: policy_socket_mode = 0999: expected an octal file mode such as 0660");
	expect_error("[gateway]\npolicy_listen = nohostport\n" MIN_CONF, "t.conf:2: policy_listen = nohostport: expected host:port");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_defaults),
		cmocka_unit_test(test_every_gateway_key),
		cmocka_unit_test(test_every_domain_key),
		cmocka_unit_test(test_ldap_keys),
		cmocka_unit_test(test_ttl_inheritance),
		cmocka_unit_test(test_issue_example),
		cmocka_unit_test(test_domains_lookup),
		cmocka_unit_test(test_refcount),
		cmocka_unit_test(test_errors_syntax),
		cmocka_unit_test(test_errors_values),
		cmocka_unit_test(test_errors_validation),
		cmocka_unit_test(test_specs_by_registry),
		cmocka_unit_test(test_errors_lines),
		cmocka_unit_test(test_errors_all_collected),
		cmocka_unit_test(test_from_file),
		cmocka_unit_test(test_describe),
		cmocka_unit_test(test_policy_keys),
		cmocka_unit_test(test_random_input),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
