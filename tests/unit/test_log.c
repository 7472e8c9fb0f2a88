/* test_log.c - the stderr log sink: one timestamped line per message, levels filtered, long
 * messages cut to LOG_LINE_MAX with the newline kept, and lines from two threads writing at once
 * into one pipe never interleaved. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "log.h"

#define CAPTURE_MAX (4 << 20)

/* stderr goes into a pipe while fn runs; a reader thread keeps the pipe drained. */
struct capture {
	int fd;
	char *buf;
	size_t len;
};

static void *capture_reader(void *arg)
{
	struct capture *c = arg;
	char spill[4096];
	ssize_t n;
	/* past CAPTURE_MAX the rest is drained and dropped, so that a writer never blocks for good */
	while ((n = c->len < CAPTURE_MAX - 1 ? read(c->fd, c->buf + c->len, CAPTURE_MAX - 1 - c->len)
					    : read(c->fd, spill, sizeof spill)) > 0)
		c->len += c->len < CAPTURE_MAX - 1 ? (size_t)n : 0;
	c->buf[c->len] = '\0';
	return NULL;
}

static char *capture_stderr(void (*fn)(void), size_t *len)
{
	int p[2];
	assert_int_equal(pipe(p), 0);
	int saved = dup(STDERR_FILENO);
	dup2(p[1], STDERR_FILENO);
	close(p[1]);
	struct capture c = { .fd = p[0], .buf = malloc(CAPTURE_MAX) };
	pthread_t reader;
	assert_int_equal(pthread_create(&reader, NULL, capture_reader, &c), 0);
	fn();
	dup2(saved, STDERR_FILENO); /* the pipe's last writer goes: the reader sees its end */
	close(saved);
	pthread_join(reader, NULL);
	close(p[0]);
	*len = c.len;
	return c.buf;
}

static void log_three(void)
{
	log_open(false, LOG_LVL_NOTICE);
	log_notice("hello %d", 42);
	log_info("filtered out");
	log_err("bad thing");
}

static void test_lines_and_levels(void **state)
{
	(void)state;
	size_t len;
	char *out = capture_stderr(log_three, &len);
	char *first = out, *nl = strchr(out, '\n');
	assert_non_null(nl);
	*nl = '\0';
	/* 2026-12-06T12:00:00.123Z backstop[notice]: hello 42 */
	assert_int_equal(strlen(first), 24 + strlen(" backstop[notice]: hello 42"));
	assert_int_equal(first[10], 'T');
	assert_int_equal(first[23], 'Z');
	assert_string_equal(first + 24, " backstop[notice]: hello 42");
	char *second = nl + 1;
	nl = strchr(second, '\n');
	assert_non_null(nl);
	*nl = '\0';
	assert_string_equal(second + 24, " backstop[error]: bad thing");
	assert_string_equal(nl + 1, ""); /* the info line was filtered */
	free(out);
}

static void log_long(void)
{
	static char big[3 * LOG_LINE_MAX];
	memset(big, 'x', sizeof big - 1);
	log_open(false, LOG_LVL_INFO);
	log_notice("%s", big);
	log_notice("after");
}

static void test_long_line_cut(void **state)
{
	(void)state;
	size_t len;
	char *out = capture_stderr(log_long, &len);
	char *nl = strchr(out, '\n');
	assert_non_null(nl);
	assert_int_equal((size_t)(nl - out) + 1, LOG_LINE_MAX - 1); /* cut, newline kept */
	assert_non_null(strstr(nl + 1, "backstop[notice]: after\n"));
	free(out);
}

#define LINES_PER_THREAD 2000

static void *log_many(void *arg)
{
	char body[600];
	memset(body, *(const char *)arg, sizeof body - 1);
	body[sizeof body - 1] = '\0';
	for (int i = 0; i < LINES_PER_THREAD; i++)
		log_notice("%s", body);
	return NULL;
}

static void log_two_threads(void)
{
	static char fill_a = 'a', fill_b = 'b';
	pthread_t a, b;
	log_open(false, LOG_LVL_INFO);
	pthread_create(&a, NULL, log_many, &fill_a);
	pthread_create(&b, NULL, log_many, &fill_b);
	pthread_join(a, NULL);
	pthread_join(b, NULL);
}

static void test_threads_never_interleave(void **state)
{
	(void)state;
	size_t len;
	char *out = capture_stderr(log_two_threads, &len);
	int lines = 0;
	for (char *line = out, *nl; (nl = strchr(line, '\n')) != NULL; line = nl + 1, lines++) {
		const char *body = strstr(line, "]: ");
		assert_non_null(body);
		body += 3;
		assert_int_equal((size_t)(nl - body), 599);
		for (const char *c = body; c < nl; c++)
			assert_int_equal(*c, *body); /* all 'a' or all 'b' */
	}
	assert_int_equal(lines, 2 * LINES_PER_THREAD);
	free(out);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_lines_and_levels),
		cmocka_unit_test(test_long_line_cut),
		cmocka_unit_test(test_threads_never_interleave),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
