/* test_metrics.c - the Prometheus text writer (escaping, families, cumulative histograms), HTML
 * escaping, the key=value parser behind the snapshot, the per-minute history, the counters'
 * sums, the breaker's trip count, and both renderers over a snapshot whose names are hostile. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "backend_health.h"
#include "metrics.h"
#include "metrics_text.h"
#include "stats.h"
#include "stats_history.h"
#include "stats_snapshot.h"
#include "status_page.h"

static void test_label_escaping(void **state)
{
	(void)state;
	struct mbuf b = { 0 };
	metrics_escape_label(&b, "a\\b\"c\nd");
	assert_string_equal(b.buf, "a\\\\b\\\"c\\nd");
	mbuf_free(&b);
	metrics_escape_help(&b, "say \"hi\"\\\n");
	assert_string_equal(b.buf, "say \"hi\"\\\\\\n"); /* quotes stay in HELP */
	mbuf_free(&b);
}

static void test_samples_and_families(void **state)
{
	(void)state;
	struct mbuf b = { 0 };
	metrics_family(&b, "x_total", "counter", "Things.\nMore");
	metrics_sample(&b, "x_total", NULL, 3);
	metrics_sample(&b, "x_total", (const char *[]){ "k", "v\"1", "j", "w", NULL }, 18446744073709551615ull);
	metrics_sample_f(&b, "y", (const char *[]){ "k", NULL }, 0.25);
	assert_string_equal(b.buf, "# HELP x_total Things.\\nMore\n# TYPE x_total counter\nx_total 3\n"
				   "x_total{k=\"v\\\"1\",j=\"w\"} 18446744073709551615\ny 0.25\n");
	mbuf_free(&b);
}

static void test_histogram_is_cumulative(void **state)
{
	(void)state;
	struct mbuf b = { 0 };
	const double bounds[2] = { 0.001, 0.5 };
	const uint64_t buckets[3] = { 2, 0, 5 };
	metrics_histogram(&b, "d_seconds", (const char *[]){ "check", "verify", NULL }, bounds, buckets, 3, 1.5);
	assert_string_equal(b.buf, "d_seconds_bucket{check=\"verify\",le=\"0.001\"} 2\n"
				   "d_seconds_bucket{check=\"verify\",le=\"0.5\"} 2\n"
				   "d_seconds_bucket{check=\"verify\",le=\"+Inf\"} 7\n"
				   "d_seconds_sum{check=\"verify\"} 1.5\n"
				   "d_seconds_count{check=\"verify\"} 7\n");
	mbuf_free(&b);
}

static void test_html_escape(void **state)
{
	(void)state;
	struct mbuf b = { 0 };
	html_escape(&b, "<script>alert('x')</script>&\"\x01\x7f ok");
	assert_string_equal(b.buf, "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;&quot; ok");
	mbuf_free(&b);
}

static void test_mbuf_grows(void **state)
{
	(void)state;
	struct mbuf b = { 0 };
	char big[3000];
	memset(big, 'a', sizeof big - 1);
	big[sizeof big - 1] = '\0';
	for (int i = 0; i < 10; i++)
		mbuf_printf(&b, "%s|", big);
	assert_int_equal(b.len, 10 * sizeof big);
	assert_int_equal(strlen(b.buf), b.len);
	mbuf_free(&b);
}

struct kv_seen {
	char text[512];
};

static void kv_collect(void *arg, const char *key, const char *value)
{
	struct kv_seen *s = arg;
	strcat(s->text, key);
	strcat(s->text, "=");
	strcat(s->text, value);
	strcat(s->text, ";");
}

static void test_kv_parse(void **state)
{
	(void)state;
	struct kv_seen s = { "" };
	stats_kv_parse("source=map:/a b=1\nsurrogate_reason=\"cannot open: no such file\" junk c=\n  d=\"unterminated", kv_collect,
		       &s);
	assert_string_equal(s.text, "source=map:/a;b=1;surrogate_reason=cannot open: no such file;c=;d=unterminated;");
}

static void test_history_minutes(void **state)
{
	(void)state;
	struct stats_history h;
	uint64_t t = 1000 * 60; /* a minute boundary */
	stats_history_init(&h);
	stats_history_sample(&h, t, (const uint64_t[HIST_KINDS]){ 100, 10, 1 }); /* baseline only */
	assert_int_equal(stats_history_get(&h, t, 0, HIST_ACCEPTED), 0);
	stats_history_sample(&h, t + 30, (const uint64_t[HIST_KINDS]){ 105, 12, 1 });
	stats_history_sample(&h, t + 65, (const uint64_t[HIST_KINDS]){ 107, 12, 4 });
	assert_int_equal(stats_history_get(&h, t + 65, 1, HIST_ACCEPTED), 5);
	assert_int_equal(stats_history_get(&h, t + 65, 1, HIST_REJECTED), 2);
	assert_int_equal(stats_history_get(&h, t + 65, 0, HIST_ACCEPTED), 2);
	assert_int_equal(stats_history_get(&h, t + 65, 0, HIST_DEFERRED), 3);
	/* an hour later the old minutes are gone, not shown as current */
	stats_history_sample(&h, t + 3600 + 5, (const uint64_t[HIST_KINDS]){ 108, 12, 4 });
	assert_int_equal(stats_history_get(&h, t + 3600 + 5, 0, HIST_ACCEPTED), 1);
	assert_int_equal(stats_history_get(&h, t + 3600 + 5, 59, HIST_ACCEPTED), 2); /* t + 65's minute */
	assert_int_equal(stats_history_get(&h, t + 3600 + 5, 60, HIST_ACCEPTED), 0);
	assert_int_equal(stats_history_get(&h, t + 3600 + 65, 0, HIST_ACCEPTED), 0); /* its slot, not its minute */
}

static void test_worker_sums(void **state)
{
	(void)state;
	struct stats_worker *w = aligned_alloc(64, 2 * sizeof *w);
	struct stats_worker *list[2] = { &w[0], &w[1] };
	struct stats_totals t;
	memset(w, 0, 2 * sizeof *w);
	stats_add(&w[0].accepted, 3);
	stats_add(&w[1].accepted, 2);
	stats_session_end(&w[1], STATS_END_QUIT);
	stats_reply(&w[0], STATS_STAGE_RCPT, 550);
	stats_reply(&w[1], STATS_STAGE_RCPT, 250);
	stats_reply(&w[1], STATS_STAGE_RCPT, 999); /* not a reply code: not counted */
	stats_reply(NULL, STATS_STAGE_RCPT, 250);  /* no counters: nothing happens */
	stats_command(&w[0], 4);
	stats_sum((struct stats_worker *const *)list, 2, &t);
	assert_int_equal(t.accepted, 5);
	assert_int_equal(t.open, 4);
	assert_int_equal(t.ended[STATS_END_QUIT], 1);
	assert_int_equal(t.replies[STATS_STAGE_RCPT][3], 1);
	assert_int_equal(t.replies[STATS_STAGE_RCPT][0], 1);
	assert_int_equal(t.commands[4], 1);
	assert_string_equal(stats_verb_name(4), "rcpt");
	assert_string_equal(stats_verb_name(STATS_VERB_INVALID), "invalid");
	free(w);
}

static void count_trips(void *arg, const struct backend_health_info *info)
{
	*(unsigned long *)arg += info->trips;
}

static void test_breaker_trips_counted(void **state)
{
	(void)state;
	struct backend_health *h = backend_health_new();
	unsigned long trips = 0;
	backend_health_report(h, "b:25", false);
	backend_health_report(h, "b:25", false); /* trips */
	backend_health_report(h, "b:25", false); /* already failing: not another trip */
	backend_health_each(h, count_trips, &trips);
	assert_int_equal(trips, 1);
	backend_health_free(h);
}

/* A snapshot whose every configured name tries to break out of its context. */
static struct stats_snapshot *hostile_snapshot(void)
{
	struct stats_snapshot *s = calloc(1, sizeof *s);
	s->version = "0.1.0";
	s->now = 1800000000;
	s->start_time = s->now - 3700;
	snprintf(s->hostname, sizeof s->hostname, "<b>mx</b>\"&");
	s->nbackends = 1;
	snprintf(s->backends[0].target, sizeof s->backends[0].target, "bad\"host\n<i>:25");
	s->backends[0].state = BACKEND_FAILING;
	s->nsources = 1;
	snprintf(s->sources[0].spec, sizeof s->sources[0].spec, "map:/etc/x\"}\\<script>");
	snprintf(s->sources[0].type, sizeof s->sources[0].type, "map");
	s->sources[0].kind = STATS_SOURCE_MAP;
	s->cache.configured = true;
	snprintf(s->cache.store, sizeof s->cache.store, "<lmdb>");
	return s;
}

static void test_render_escapes_names(void **state)
{
	(void)state;
	struct stats_snapshot *s = hostile_snapshot();
	struct stats_history h;
	struct mbuf b = { 0 };

	metrics_render(s, &b);
	assert_non_null(strstr(b.buf, "backstop_backend_up{target=\"bad\\\"host\\n<i>:25\"} 0\n"));
	assert_non_null(strstr(b.buf, "source=\"map:/etc/x\\\"}\\\\<script>\""));
	/* every line is a comment or a sample: no raw line feed from a name */
	for (char *line = b.buf; *line; line = strchr(line, '\n') + 1)
		assert_true(line[0] == '#' || strncmp(line, "backstop_", 9) == 0);
	mbuf_free(&b);

	stats_history_init(&h);
	status_page_render(s, &h, &b);
	assert_null(strstr(b.buf, "<script>"));
	assert_null(strstr(b.buf, "<b>mx"));
	assert_null(strstr(b.buf, "<i>"));
	assert_non_null(strstr(b.buf, "&lt;b&gt;mx&lt;/b&gt;&quot;&amp;"));
	assert_non_null(strstr(b.buf, "map:/etc/x&quot;}\\&lt;script&gt;"));
	assert_non_null(strstr(b.buf, "<meta http-equiv=\"refresh\""));
	assert_non_null(strstr(b.buf, ">down<"));
	mbuf_free(&b);

	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);
	stats_snapshot_print(s, f);
	fclose(f);
	assert_non_null(strstr(text, "uptime_s=3700\n"));
	assert_non_null(strstr(text, "state=down"));
	free(text);
	free(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_label_escaping),
		cmocka_unit_test(test_samples_and_families),
		cmocka_unit_test(test_histogram_is_cumulative),
		cmocka_unit_test(test_html_escape),
		cmocka_unit_test(test_mbuf_grows),
		cmocka_unit_test(test_kv_parse),
		cmocka_unit_test(test_history_minutes),
		cmocka_unit_test(test_worker_sums),
		cmocka_unit_test(test_breaker_trips_counted),
		cmocka_unit_test(test_render_escapes_names),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
