/* log.h - one place where backstop writes its log: stderr (foreground) or syslog.
 * Decision lines are key=value so that admins can grep and tools can parse them. */
#ifndef BACKSTOP_LOG_H
#define BACKSTOP_LOG_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>

/* The longest line, timestamp and newline included (PIPE_BUF: a pipe takes it in one piece);
 * longer messages are cut. */
#define LOG_LINE_MAX 4096

enum log_level { LOG_LVL_ERR, LOG_LVL_WARN, LOG_LVL_NOTICE, LOG_LVL_INFO, LOG_LVL_DEBUG };

/* Select the sink. Safe to call again (e.g. after fork or on reload). */
void log_open(bool use_syslog, enum log_level max_level);
void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void log_vmsg(enum log_level level, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));

#define log_err(...) log_msg(LOG_LVL_ERR, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_LVL_WARN, __VA_ARGS__)
#define log_notice(...) log_msg(LOG_LVL_NOTICE, __VA_ARGS__)
#define log_info(...) log_msg(LOG_LVL_INFO, __VA_ARGS__)
#define log_debug(...) log_msg(LOG_LVL_DEBUG, __VA_ARGS__)

/* Copy at most dstsz-1 bytes of src into dst so that it is safe inside a log line: printable
 * ASCII kept, anything else as \xHH, '"' and '\\' escaped. Always NUL-terminates. */
void log_sanitize(char *dst, size_t dstsz, const char *src, size_t srclen);

#endif
