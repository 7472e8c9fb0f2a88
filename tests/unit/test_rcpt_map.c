/* test_rcpt_map.c - the map: recipient source: Postfix relay_recipients parsing, case and
 * sub-address rules, reload on atomic rename and in-place rewrite, a broken file keeping the old
 * data, the 1,000,000-address load time, and lookups racing reloads from several threads. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "rcpt.h"
#include "rcpt_map.h"
#include "rcpt_map_table.h"
#include "util.h"

struct fixture {
	char dir[64];
	char path[128];
	struct bs_config cfg;
	struct bs_domain dom;
};

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

/* Replace the file the way postmap users and config management do: write a temp, rename. */
static void replace_file(const char *path, const char *text)
{
	char tmp[160];
	snprintf(tmp, sizeof tmp, "%s.tmp", path);
	write_file(tmp, text);
	assert_int_equal(rename(tmp, path), 0);
}

static int setup(void **state)
{
	struct fixture *f = xcalloc(1, sizeof *f);
	snprintf(f->dir, sizeof f->dir, "/tmp/test_rcpt_map.XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	snprintf(f->path, sizeof f->path, "%s/relay_recipients", f->dir);
	snprintf(f->dom.name, sizeof f->dom.name, "example.com");
	f->dom.on_catchall = ON_CATCHALL_ACCEPT;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	char cmd[128];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", f->dir);
	assert_int_equal(system(cmd), 0);
	free(f);
	return 0;
}

static void on_answer(void *arg, const struct rcpt_answer *ans) { *(struct rcpt_answer *)arg = *ans; }

/* Look address up in the opened map with the domain rules of f->dom. */
static struct rcpt_answer ask(struct fixture *f, void *map, const char *address)
{
	struct rcpt_addr a;
	struct rcpt_answer ans = { .verdict = 99 };
	const char *at = strrchr(address, '@');
	assert_int_equal(rcpt_addr_make(&a, address, (size_t)(at - address), at + 1, &f->dom), 0);
	assert_null(rcpt_map_type.lookup(map, NULL, &a, on_answer, &ans));
	assert_int_not_equal(ans.verdict, 99);
	return ans;
}

static void *open_map(struct fixture *f)
{
	char why[256] = "";
	void *m = rcpt_map_type.open(f->path, &f->cfg, why, sizeof why);
	assert_non_null(m);
	return m;
}

static void test_parse_postfix_format(void **state)
{
	struct fixture *f = *state;
	write_file(f->path,
		   "# relay_recipients, as Postfix reads it\n"
		   "\n"
		   "alice@example.com OK\n"
		   "Bob@Example.COM.\tOK\n"
		   "carol@example.com\n"
		   "dave@example.com   OK   # trailing words are part of the value\n"
		   "   continuation of dave's value, not a key\n"
		   "erin@example.com OK\r\n"
		   "\"john doe\"@example.com OK\n"
		   "   \n"
		   "@catchall.example OK\n"
		   "no-newline-at-end@example.com");
	void *m = open_map(f);
	struct rcpt_map_status st;
	rcpt_map_status(m, &st);
	assert_true(st.loaded);
	assert_int_equal(st.entries, 8);

	assert_int_equal(ask(f, m, "alice@example.com").verdict, RCPT_VALID);
	assert_int_equal(ask(f, m, "bob@example.com").verdict, RCPT_VALID);
	assert_int_equal(ask(f, m, "carol@example.com").verdict, RCPT_VALID);
	assert_int_equal(ask(f, m, "dave@example.com").verdict, RCPT_VALID);
	assert_int_equal(ask(f, m, "erin@example.com").verdict, RCPT_VALID);
	assert_int_equal(ask(f, m, "john doe@example.com").verdict, RCPT_VALID);
	assert_int_equal(ask(f, m, "no-newline-at-end@example.com").verdict, RCPT_VALID);
	struct rcpt_answer no = ask(f, m, "mallory@example.com");
	assert_int_equal(no.verdict, RCPT_INVALID);
	assert_string_equal(no.reason, "no such entry");
	assert_true(strncmp(no.source, "map:", 4) == 0);
	assert_int_equal(ask(f, m, "continuation@example.com").verdict, RCPT_INVALID);
	assert_int_equal(ask(f, m, "alice@other.example").verdict, RCPT_INVALID);

	struct rcpt_answer any = ask(f, m, "whoever@catchall.example");
	assert_int_equal(any.verdict, RCPT_VALID);
	assert_true(any.catchall);
	rcpt_map_type.close(m);
}

static void test_case_rules(void **state)
{
	struct fixture *f = *state;
	write_file(f->path, "Alice@example.com OK\nbob@example.com OK\n");
	void *m = open_map(f);
	assert_int_equal(ask(f, m, "ALICE@EXAMPLE.COM").verdict, RCPT_VALID);
	assert_int_equal(ask(f, m, "alice@example.com").verdict, RCPT_VALID);
	f->dom.case_sensitive_local = true;
	assert_int_equal(ask(f, m, "Alice@EXAMPLE.com").verdict, RCPT_VALID); /* domain still folds */
	assert_int_equal(ask(f, m, "alice@example.com").verdict, RCPT_INVALID);
	assert_int_equal(ask(f, m, "Bob@example.com").verdict, RCPT_INVALID);
	rcpt_map_type.close(m);
}

static void test_recipient_delimiter(void **state)
{
	struct fixture *f = *state;
	write_file(f->path, "user@example.com OK\nuser+exact@example.com OK\n");
	void *m = open_map(f);
	assert_int_equal(ask(f, m, "user+tag@example.com").verdict, RCPT_INVALID); /* no delimiter set */
	snprintf(f->dom.recipient_delimiter, sizeof f->dom.recipient_delimiter, "+-");
	assert_int_equal(ask(f, m, "user+tag@example.com").verdict, RCPT_VALID);
	assert_int_equal(ask(f, m, "User-list+x@example.com").verdict, RCPT_VALID);
	assert_int_equal(ask(f, m, "user+exact@example.com").verdict, RCPT_VALID);
	assert_int_equal(ask(f, m, "other+tag@example.com").verdict, RCPT_INVALID);
	assert_int_equal(ask(f, m, "+user@example.com").verdict, RCPT_INVALID); /* leading: not a tag */

	struct rcpt_addr a;
	assert_int_equal(rcpt_addr_make(&a, "User+Tag", 8, "example.com", &f->dom), 0);
	assert_string_equal(a.full, "user+tag@example.com");
	assert_string_equal(a.base, "user@example.com");
	assert_string_equal(rcpt_addr_domain(&a), "example.com");
	rcpt_map_type.close(m);
}

static void test_bad_lines_name_file_and_line(void **state)
{
	static const struct { const char *text, *why; } cases[] = {
		{ "ok@example.com OK\nnot-an-address OK\n", ":2: not an address (no '@')" },
		{ "# c\n\nx@bad..domain OK\n", ":3: invalid domain" },
		{ "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa@example.com\n",
		  ":1: local part longer than 64 octets" },
		/* issue 9 item 12: ""@domain is not a second spelling of the catch-all */
		{ "ok@example.com OK\n\"\"@example.com OK\n", ":2: empty local part" },
		{ "# x\n\"\"@Example.COM\n", ":2: empty local part" },
	};
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		char why[256] = "";
		assert_null(map_table_parse("FILE", cases[i].text, strlen(cases[i].text), why, sizeof why));
		assert_non_null(strstr(why, cases[i].why));
		assert_true(strncmp(why, "FILE:", 5) == 0);
	}
	(void)state;
}

/* What `backstop sync` may write: one word, one address, a non-empty local part. */
static void test_key_check_for_sync(void **state)
{
	static const char *ok[] = { "alice@example.com", "\"john doe\"@example.com", "a+b@[192.0.2.1]" };
	static const char *bad[] = { "\"\"@example.com", "@example.com", "a b@example.com", "nodomain",
				     "x@bad..domain", "#x@example.com", "" };
	for (size_t i = 0; i < ARRAY_SIZE(ok); i++)
		assert_null(map_table_key_check(ok[i], strlen(ok[i])));
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++)
		assert_non_null(map_table_key_check(bad[i], strlen(bad[i])));
	assert_non_null(strstr(map_table_key_check("\"\"@example.com", 14), "empty local part"));
	(void)state;
}

static void test_missing_file_is_unavailable_until_it_appears(void **state)
{
	struct fixture *f = *state;
	void *m = open_map(f);
	struct rcpt_answer a = ask(f, m, "alice@example.com");
	assert_int_equal(a.verdict, RCPT_UNAVAILABLE);
	assert_non_null(strstr(a.reason, "cannot read"));
	struct rcpt_map_status st;
	rcpt_map_status(m, &st);
	replace_file(f->path, "alice@example.com OK\n");
	assert_true(rcpt_map_wait_attempts(m, st.attempts, 5000));
	assert_int_equal(ask(f, m, "alice@example.com").verdict, RCPT_VALID);
	rcpt_map_type.close(m);
}

static void test_reload_atomic_rename(void **state)
{
	struct fixture *f = *state;
	write_file(f->path, "alice@example.com OK\n");
	void *m = open_map(f);
	struct rcpt_map_status st;
	rcpt_map_status(m, &st);
	replace_file(f->path, "bob@example.com OK\n");
	assert_true(rcpt_map_wait_attempts(m, st.attempts, 5000));
	assert_int_equal(ask(f, m, "alice@example.com").verdict, RCPT_INVALID);
	assert_int_equal(ask(f, m, "bob@example.com").verdict, RCPT_VALID);
	rcpt_map_type.close(m);
}

static void test_reload_in_place_rewrite(void **state)
{
	struct fixture *f = *state;
	write_file(f->path, "alice@example.com OK\n");
	void *m = open_map(f);
	struct rcpt_map_status st;
	rcpt_map_status(m, &st);
	write_file(f->path, "carol@example.com OK\n"); /* truncate and write the same inode */
	assert_true(rcpt_map_wait_attempts(m, st.attempts, 5000));
	rcpt_map_status(m, &st);
	if (ask(f, m, "carol@example.com").verdict != RCPT_VALID) /* an IN_ATTRIB came first */
		assert_true(rcpt_map_wait_attempts(m, st.attempts, 5000));
	assert_int_equal(ask(f, m, "carol@example.com").verdict, RCPT_VALID);
	assert_int_equal(ask(f, m, "alice@example.com").verdict, RCPT_INVALID);
	rcpt_map_type.close(m);
}

static void test_broken_file_keeps_old_data(void **state)
{
	struct fixture *f = *state;
	write_file(f->path, "alice@example.com OK\n");
	void *m = open_map(f);
	struct rcpt_map_status st;
	rcpt_map_status(m, &st);
	replace_file(f->path, "bob@example.com OK\nthis line is broken\n");
	assert_true(rcpt_map_wait_attempts(m, st.attempts, 5000));
	struct rcpt_map_status after;
	rcpt_map_status(m, &after);
	assert_int_equal(after.failures, st.failures + 1);
	assert_int_equal(ask(f, m, "alice@example.com").verdict, RCPT_VALID);
	assert_int_equal(ask(f, m, "bob@example.com").verdict, RCPT_INVALID);
	assert_int_equal(rcpt_map_type.reload(m), -1); /* explicit reload: same verdict */
	assert_int_equal(ask(f, m, "alice@example.com").verdict, RCPT_VALID);
	rcpt_map_type.close(m);
}

static void write_many(const char *path, unsigned n)
{
	FILE *out = fopen(path, "w");
	assert_non_null(out);
	for (unsigned i = 0; i < n; i++)
		fprintf(out, "user%u@domain%u.example OK\n", i, i % 1000);
	fclose(out);
}

static void test_million_addresses_load_fast(void **state)
{
	struct fixture *f = *state;
	write_many(f->path, 1000000);
	uint64_t t0 = now_ms();
	void *m = open_map(f);
	uint64_t ms = now_ms() - t0;
	struct rcpt_map_status st;
	rcpt_map_status(m, &st);
	assert_int_equal(st.entries, 1000000);
	print_message("map: 1,000,000 addresses loaded in %llu ms\n", (unsigned long long)ms);
#if !defined(__SANITIZE_ADDRESS__)
	assert_true(ms < 2000);
#endif
	snprintf(f->dom.name, sizeof f->dom.name, "domain7.example");
	t0 = now_ms();
	for (unsigned i = 0; i < 100000; i++) {
		char addr[64];
		snprintf(addr, sizeof addr, "user%u@domain%u.example", i * 7 % 1000000, i * 7 % 1000000 % 1000);
		assert_int_equal(ask(f, m, addr).verdict, RCPT_VALID);
	}
	print_message("map: 100,000 lookups in %llu ms\n", (unsigned long long)(now_ms() - t0));
	rcpt_map_type.close(m);
}

struct racer {
	struct fixture *f;
	void *map;
	unsigned answers;
};

static void *racer_main(void *arg)
{
	struct racer *r = arg;
	struct rcpt_addr a;
	for (unsigned i = 0; i < 20000; i++) {
		struct rcpt_answer ans = { .verdict = 99 };
		rcpt_addr_make(&a, "alice", 5, "example.com", &r->f->dom);
		rcpt_map_type.lookup(r->map, NULL, &a, on_answer, &ans);
		if (ans.verdict == RCPT_VALID || ans.verdict == RCPT_INVALID)
			r->answers++;
	}
	return NULL;
}

static void test_lookups_during_reloads(void **state)
{
	struct fixture *f = *state;
	write_file(f->path, "alice@example.com OK\n");
	void *m = open_map(f);
	struct racer r[4];
	pthread_t th[4];
	for (int i = 0; i < 4; i++) {
		r[i] = (struct racer){ .f = f, .map = m };
		pthread_create(&th[i], NULL, racer_main, &r[i]);
	}
	for (int i = 0; i < 30; i++) {
		replace_file(f->path, i % 2 ? "alice@example.com OK\n" : "bob@example.com OK\nalice@example.com\n");
		rcpt_map_type.reload(m); /* main-thread reloads race the watcher's too */
	}
	for (int i = 0; i < 4; i++) {
		pthread_join(th[i], NULL);
		assert_int_equal(r[i].answers, 20000);
	}
	assert_int_equal(ask(f, m, "alice@example.com").verdict, RCPT_VALID);
	rcpt_map_type.close(m);
}

static void test_registry_and_surrogate(void **state)
{
	struct fixture *f = *state;
	const char *arg;
	assert_ptr_equal(rcpt_type_find("map:/x", &arg), &rcpt_map_type);
	assert_string_equal(arg, "/x");
	assert_null(rcpt_type_find("nosuch:/x", &arg));

	struct rcpt_source *src = rcpt_source_open("nosuch:whatever", &f->cfg);
	assert_true(src->surrogate);
	struct rcpt_addr a;
	struct rcpt_answer ans;
	rcpt_addr_make(&a, "x", 1, "example.com", &f->dom);
	assert_null(src->type->lookup(src->state, NULL, &a, on_answer, &ans));
	assert_int_equal(ans.verdict, RCPT_UNAVAILABLE);
	assert_string_equal(ans.source, "nosuch:whatever");
	assert_non_null(strstr(ans.reason, "unknown source type"));
	rcpt_source_close(src);
}

int main(void)
{
	log_open(false, LOG_LVL_WARN);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_parse_postfix_format, setup, teardown),
		cmocka_unit_test_setup_teardown(test_case_rules, setup, teardown),
		cmocka_unit_test_setup_teardown(test_recipient_delimiter, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_lines_name_file_and_line, setup, teardown),
		cmocka_unit_test_setup_teardown(test_key_check_for_sync, setup, teardown),
		cmocka_unit_test_setup_teardown(test_missing_file_is_unavailable_until_it_appears, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reload_atomic_rename, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reload_in_place_rewrite, setup, teardown),
		cmocka_unit_test_setup_teardown(test_broken_file_keeps_old_data, setup, teardown),
		cmocka_unit_test_setup_teardown(test_million_addresses_load_fast, setup, teardown),
		cmocka_unit_test_setup_teardown(test_lookups_during_reloads, setup, teardown),
		cmocka_unit_test_setup_teardown(test_registry_and_surrogate, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
