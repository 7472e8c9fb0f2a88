/* control_cli.c - talking to the running daemon through its control socket (control.h has the
 * protocol): one request line, then the answer's lines until ". N". */
#include "control_cli.h"

#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include "config.h"
#include "control.h"
#include "util.h"

#define CONTROL_CLI_STATUS_TIMEOUT 30
#define CONTROL_CLI_RELOAD_TIMEOUT 300 /* opening LDAP sources and loading big maps takes a while */

void control_cli_socket(const char *conf, const char *opt, char *path, size_t pathsz)
{
	if (opt != NULL) {
		snprintf(path, pathsz, "%s", opt);
		return;
	}
	if (config_peek_gateway(conf, "control_socket", path, pathsz) < 0)
		config_peek_gateway("/dev/null", "control_socket", path, pathsz); /* the default */
}

static int control_cli_connect(const char *path, int timeout_s, char *why, size_t whysz)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	struct timeval tv = { timeout_s, 0 };

	if (path[0] == '\0') {
		snprintf(why, whysz, "control_socket is empty in the configuration (no control socket)");
		return -1;
	}
	if (strbuf_copy(sun.sun_path, sizeof sun.sun_path, path, strlen(path)) < 0) {
		snprintf(why, whysz, "%s: path too long", path);
		return -1;
	}
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (const struct sockaddr *)&sun, sizeof sun) != 0) {
		snprintf(why, whysz, "%s: %s%s", path, strerror(errno),
			 errno == EACCES ? " (only root and the service's group may use it)"
			 : errno == ENOENT || errno == ECONNREFUSED ? " (is backstop running?)" : "");
		if (fd >= 0)
			close(fd);
		return -1;
	}
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
	return fd;
}

/* Read the answer into a buffer until its ". N" line; returns N (text: the lines before it), or -1. */
static int control_cli_read(int fd, char **text, size_t *len, char *why, size_t whysz)
{
	size_t cap = 4096, n = 0, line = 0; /* line: start of the first line not yet looked at */
	char *buf = xmalloc(cap);

	for (;;) {
		char *nl;
		while ((nl = memchr(buf + line, '\n', n - line)) != NULL) {
			if (buf[line] == '.' && buf[line + 1] == ' ') { /* stuffed lines start with ".." */
				*nl = '\0';
				*text = buf;
				*len = line;
				return atoi(buf + line + 2);
			}
			line = (size_t)(nl - buf) + 1;
		}
		if (n + 1024 > cap)
			buf = xrealloc(buf, cap *= 2);
		ssize_t got = read(fd, buf + n, cap - n);
		if (got <= 0) {
			snprintf(why, whysz, "%s", got == 0 ? "the daemon closed the connection without an answer"
				 : errno == EAGAIN ? "no answer in time" : strerror(errno));
			free(buf);
			return -1;
		}
		n += (size_t)got;
	}
}

int control_cli_request(const char *path, const char *request, int timeout_s, FILE *out, FILE *err, char *why,
			size_t whysz)
{
	int fd = control_cli_connect(path, timeout_s, why, whysz);
	if (fd < 0)
		return -1;
	size_t rlen = strlen(request);
	char *text = NULL;
	size_t len = 0;
	int status = -1;
	if (write(fd, request, rlen) != (ssize_t)rlen || write(fd, "\n", 1) != 1)
		snprintf(why, whysz, "%s: %s", path, strerror(errno));
	else
		status = control_cli_read(fd, &text, &len, why, whysz);
	close(fd);
	if (status < 0)
		return -1;
	FILE *to = status == 0 ? out : err;
	for (size_t i = 0; i < len;) {
		char *nl = memchr(text + i, '\n', len - i);
		size_t n = nl ? (size_t)(nl - (text + i)) : len - i;
		size_t skip = n > 0 && text[i] == '.' ? 1 : 0; /* unstuff */
		fprintf(to, "%.*s\n", (int)(n - skip), text + i + skip);
		i += n + 1;
	}
	free(text);
	return status;
}

/* -c FILE, -s PATH, -h for status and reload; 0, 1 (help shown) or -1. */
static int control_cli_options(int argc, char **argv, const char *usage, char *path, size_t pathsz)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' }, { "socket", required_argument, NULL, 's' },
		{ "help", no_argument, NULL, 'h' }, { 0 }
	};
	const char *conf = CONFIG_DEFAULT_PATH, *sock = NULL;
	int ch;

	optind = 1;
	while ((ch = getopt_long(argc, argv, "c:s:h", opts, NULL)) != -1) {
		switch (ch) {
		case 'c': conf = optarg; break;
		case 's': sock = optarg; break;
		case 'h': printf("%s", usage); return 1;
		default: fprintf(stderr, "%s", usage); return -1;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "backstop %s: unexpected argument: %s\n%s", argv[0], argv[optind], usage);
		return -1;
	}
	control_cli_socket(conf, sock, path, pathsz);
	return 0;
}

static int control_cli_simple(int argc, char **argv, const char *request, int timeout_s)
{
	char path[BS_UNIX_PATH_MAX + 1], why[512], usage[128];

	snprintf(usage, sizeof usage, "usage: backstop %s [-c FILE] [-s SOCKET]\n", request);
	int rc = control_cli_options(argc, argv, usage, path, sizeof path);
	if (rc != 0)
		return rc > 0 ? CONTROL_OK : CONTROL_USAGE;
	rc = control_cli_request(path, request, timeout_s, stdout, stderr, why, sizeof why);
	if (rc < 0) {
		fprintf(stderr, "backstop %s: cannot reach the daemon: %s\n", request, why);
		return CONTROL_UNREACHABLE;
	}
	return rc;
}

int status_cli_main(int argc, char **argv)
{
	return control_cli_simple(argc, argv, "status", CONTROL_CLI_STATUS_TIMEOUT);
}

int reload_cli_main(int argc, char **argv)
{
	return control_cli_simple(argc, argv, "reload", CONTROL_CLI_RELOAD_TIMEOUT);
}
