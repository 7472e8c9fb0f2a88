/* log.c - the log sink: stderr lines with a timestamp, or syslog(3) with facility mail. */
#include "log.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

static bool log_syslog;
static enum log_level log_max = LOG_LVL_INFO;

void log_open(bool use_syslog, enum log_level max_level)
{
	log_syslog = use_syslog;
	log_max = max_level;
	if (use_syslog)
		openlog("backstop", LOG_PID | LOG_NDELAY, LOG_MAIL);
}

static int log_syslog_priority(enum log_level level)
{
	static const int prio[] = { LOG_ERR, LOG_WARNING, LOG_NOTICE, LOG_INFO, LOG_DEBUG };
	return prio[level];
}

/* "2026-12-06T12:00:00" for this second; each thread keeps the last one it formatted. */
static const char *log_stamp(time_t sec)
{
	static _Thread_local time_t stamp_sec = (time_t)-1;
	static _Thread_local char stamp[32];

	if (sec != stamp_sec) {
		struct tm tm;
		gmtime_r(&sec, &tm);
		strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", &tm);
		stamp_sec = sec;
	}
	return stamp;
}

/* The whole line in one write(2): lines from different workers never interleave (a pipe takes
 * up to PIPE_BUF bytes at once, a file's offset is locked per write), and no stdio lock is shared
 * between the workers. */
static void log_write_line(const char *line, size_t len)
{
	while (len > 0) {
		ssize_t n = write(STDERR_FILENO, line, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return; /* nowhere left to say it */
		line += n;
		len -= (size_t)n;
	}
}

__attribute__((format(printf, 2, 0)))
void log_vmsg(enum log_level level, const char *fmt, va_list ap)
{
	static const char *const names[] = { "error", "warning", "notice", "info", "debug" };
	char line[LOG_LINE_MAX];

	if (level > log_max)
		return;
	if (log_syslog) {
		vsnprintf(line, sizeof line, fmt, ap);
		syslog(log_syslog_priority(level), "%s", line);
		return;
	}
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	int head = snprintf(line, sizeof line, "%s.%03ldZ backstop[%s]: ", log_stamp(ts.tv_sec),
			    ts.tv_nsec / 1000000L, names[level]);
	size_t len = (size_t)head;
	int body = vsnprintf(line + len, sizeof line - len - 1, fmt, ap); /* room kept for the '\n' */
	if (body > 0)
		len += (size_t)body < sizeof line - len - 1 ? (size_t)body : sizeof line - len - 2;
	line[len++] = '\n';
	log_write_line(line, len);
}

void log_msg(enum log_level level, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	log_vmsg(level, fmt, ap);
	va_end(ap);
}

void log_sanitize(char *dst, size_t dstsz, const char *src, size_t srclen)
{
	static const char hex[] = "0123456789abcdef";
	size_t o = 0;

	if (dstsz == 0)
		return;
	for (size_t i = 0; i < srclen; i++) {
		unsigned char c = (unsigned char)src[i];
		if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\') {
			if (o + 1 >= dstsz)
				break;
			dst[o++] = (char)c;
		} else if (c == '"' || c == '\\') {
			if (o + 2 >= dstsz)
				break;
			dst[o++] = '\\';
			dst[o++] = (char)c;
		} else {
			if (o + 4 >= dstsz)
				break;
			dst[o++] = '\\';
			dst[o++] = 'x';
			dst[o++] = hex[c >> 4];
			dst[o++] = hex[c & 15];
		}
	}
	dst[o] = '\0';
}
