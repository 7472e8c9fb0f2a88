/* bench/smtp_flood.c - a lean SMTP load generator for the benchmarks (built, never installed).
 *
 * Keeps -c sessions open in parallel until -n sessions have run. Each session: greeting, EHLO,
 * MAIL FROM, -r RCPT TO, with -m SIZE a message of SIZE bytes (DATA), QUIT. With -P (RFC 2920
 * PIPELINING, as bulk senders and harvest bots use it) MAIL, every RCPT and DATA or QUIT leave in
 * one write after the EHLO reply, and the message and QUIT in one write after the 354; without it
 * each command waits for its reply, like smtp-source. It exists because smtp-source spends about as much CPU
 * per session as the gateway it measures, and on a 2-core machine the two share the cores: this
 * client does the least a client can, so that the gateway and loopback TCP set the rate.
 *
 * Recipients: -t ADDRESS, numbered before the '@' (nobody0@, nobody1@, ...) modulo -u DISTINCT.
 * Prints one line of key=value figures (sessions, RCPT replies by class, seconds, rates, the
 * client's own CPU seconds); exit 0 when every session ran to its 221, 1 otherwise. */
#include <errno.h>
#include <stdarg.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum phase { PH_GREETING, PH_EHLO, PH_MAIL, PH_RCPT, PH_DATA, PH_BODY, PH_QUIT };

struct flood {
	struct event_base *base;
	struct sockaddr_in addr;
	int parallel, rcpts, pipelined;
	long sessions, started, finished, failed;
	long rcpt_class[6]; /* index = first digit of the RCPT reply */
	long delivered;     /* messages answered 2xx after their final dot */
	char *body;         /* the message, dot-terminated, when -m is given */
	size_t body_len, out_cap;
	const char *from, *rcpt;
	long distinct;      /* > 0: a counter modulo distinct goes before rcpt's '@' */
	long rcpt_counter;
};

struct conn {
	struct flood *f;
	struct event *ev;
	int fd;
	enum phase phase;
	int rcpt_answered;
	char in[4096];
	size_t inlen;
	char *out; /* out_cap bytes */
	size_t outlen, outoff;
};

static void conn_start(struct flood *f);

static void conn_end(struct conn *c, int ok)
{
	struct flood *f = c->f;
	event_free(c->ev);
	close(c->fd);
	free(c->out);
	free(c);
	f->finished++;
	if (!ok)
		f->failed++;
	if (f->started < f->sessions)
		conn_start(f);
	else if (f->finished == f->sessions)
		event_base_loopbreak(f->base);
}

static int out_append(struct conn *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int out_append(struct conn *c, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(c->out + c->outlen, c->f->out_cap - c->outlen, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= c->f->out_cap - c->outlen)
		return -1;
	c->outlen += (size_t)n;
	return 0;
}

static int append_rcpt(struct conn *c)
{
	struct flood *f = c->f;
	if (f->distinct == 0)
		return out_append(c, "RCPT TO:<%s>\r\n", f->rcpt);
	const char *at = strrchr(f->rcpt, '@');
	return out_append(c, "RCPT TO:<%.*s%ld%s>\r\n", (int)(at - f->rcpt), f->rcpt, f->rcpt_counter++ % f->distinct, at);
}

/* Writes what is queued; 0 when all of it left, 1 when the kernel holds some back, -1 on error. */
static int conn_flush(struct conn *c)
{
	while (c->outoff < c->outlen) {
		ssize_t n = send(c->fd, c->out + c->outoff, c->outlen - c->outoff, MSG_NOSIGNAL);
		if (n < 0 && errno == EAGAIN)
			return 1;
		if (n <= 0)
			return -1;
		c->outoff += (size_t)n;
	}
	c->outlen = c->outoff = 0;
	return 0;
}

/* The next commands after a final reply with this code; -1 ends the session as failed, 1 as done. */
static int conn_advance(struct conn *c, int code)
{
	struct flood *f = c->f;
	switch (c->phase) {
	case PH_GREETING:
		if (code != 220)
			return -1;
		c->phase = PH_EHLO;
		return out_append(c, "EHLO client.bench\r\n");
	case PH_EHLO:
		if (code != 250)
			return -1;
		c->phase = PH_MAIL;
		if (out_append(c, "MAIL FROM:<%s>\r\n", f->from) < 0)
			return -1;
		if (f->pipelined) {
			for (int i = 0; i < f->rcpts; i++)
				if (append_rcpt(c) < 0)
					return -1;
			return out_append(c, f->body ? "DATA\r\n" : "QUIT\r\n");
		}
		return 0;
	case PH_MAIL:
		if (code != 250)
			return -1;
		c->phase = PH_RCPT;
		return f->pipelined ? 0 : append_rcpt(c);
	case PH_RCPT:
		f->rcpt_class[code / 100 % 6]++;
		if (++c->rcpt_answered < f->rcpts)
			return f->pipelined ? 0 : append_rcpt(c);
		c->phase = f->body ? PH_DATA : PH_QUIT;
		return f->pipelined ? 0 : out_append(c, f->body ? "DATA\r\n" : "QUIT\r\n");
	case PH_DATA:
		if (code != 354) { /* no recipient was accepted: nothing to send */
			c->phase = PH_QUIT;
			return out_append(c, "QUIT\r\n");
		}
		c->phase = PH_BODY;
		if (f->out_cap - c->outlen < f->body_len)
			return -1;
		memcpy(c->out + c->outlen, f->body, f->body_len);
		c->outlen += f->body_len;
		return f->pipelined ? out_append(c, "QUIT\r\n") : 0;
	case PH_BODY:
		f->delivered += code / 100 == 2;
		c->phase = PH_QUIT;
		return f->pipelined ? 0 : out_append(c, "QUIT\r\n");
	case PH_QUIT:
		return code == 221 ? 1 : -1;
	}
	return -1;
}

/* Consumes every complete reply in the input; same return convention as conn_advance. */
static int conn_replies(struct conn *c)
{
	size_t start = 0;
	int r = 0;
	for (;;) {
		char *nl = memchr(c->in + start, '\n', c->inlen - start);
		if (nl == NULL)
			break;
		size_t len = (size_t)(nl - (c->in + start)) + 1;
		const char *line = c->in + start;
		start += len;
		if (len < 5 || line[3] == '-')
			continue;
		r = conn_advance(c, atoi(line));
		if (r != 0)
			break;
	}
	memmove(c->in, c->in + start, c->inlen - start);
	c->inlen -= start;
	if (r == 0 && c->inlen == sizeof c->in)
		r = -1; /* a line longer than the buffer */
	return r;
}

static void conn_event(evutil_socket_t fd, short what, void *arg)
{
	struct conn *c = arg;
	if (what & EV_READ) {
		ssize_t n = recv(fd, c->in + c->inlen, sizeof c->in - c->inlen, 0);
		if (n < 0 && errno == EAGAIN)
			return;
		if (n <= 0) {
			conn_end(c, 0);
			return;
		}
		c->inlen += (size_t)n;
		int r = conn_replies(c);
		if (r != 0) {
			conn_end(c, r > 0);
			return;
		}
	}
	int w = conn_flush(c);
	if (w < 0) {
		conn_end(c, 0);
		return;
	}
	short want = (short)(EV_READ | EV_PERSIST | (w > 0 ? EV_WRITE : 0));
	if (event_get_events(c->ev) != want) {
		event_del(c->ev);
		event_assign(c->ev, c->f->base, fd, want, conn_event, c);
		event_add(c->ev, NULL);
	}
}

static void conn_start(struct flood *f)
{
	f->started++;
	struct conn *c = calloc(1, sizeof *c);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
	if (c == NULL || (c->out = malloc(f->out_cap)) == NULL || fd < 0) {
		perror("smtp_flood: socket");
		exit(1);
	}
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	c->f = f;
	c->fd = fd;
	if (connect(fd, (struct sockaddr *)&f->addr, sizeof f->addr) < 0 && errno != EINPROGRESS) {
		perror("smtp_flood: connect"); /* nothing listens, or no local port is left */
		exit(1);
	}
	/* The greeting arrives once connected; a refused connect shows as a failed read. */
	c->ev = event_new(f->base, fd, EV_READ | EV_PERSIST, conn_event, c);
	event_add(c->ev, NULL);
}

/* A message of about size bytes: a Subject, then lines of 76 'x', then the final dot. */
static void body_make(struct flood *f, size_t size)
{
	static const char head[] = "Subject: smtp_flood\r\n\r\n";
	f->body = malloc(size + 128);
	if (f->body == NULL) {
		perror("smtp_flood: body");
		exit(1);
	}
	size_t n = sizeof head - 1;
	memcpy(f->body, head, n);
	while (n < size) {
		memset(f->body + n, 'x', 76);
		memcpy(f->body + n + 76, "\r\n", 2);
		n += 78;
	}
	memcpy(f->body + n, ".\r\n", 3);
	f->body_len = n + 3;
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void usage(void)
{
	fprintf(stderr, "usage: smtp_flood [-P] [-c PARALLEL] [-n SESSIONS] [-r RCPTS] [-m SIZE] [-f FROM]\n"
	                "                  [-t RCPT] [-u DISTINCT] HOST:PORT\n"
	                "  -m SIZE: send a message of about SIZE bytes (1 to 10000000) after the RCPTs\n"
	                "  with -u N > 0 a counter modulo N goes before the '@' of RCPT: nobody0@example.test,\n"
	                "  nobody1@... (defaults: -t nobody@example.test -u 200); -u 0 sends RCPT as it is\n");
	exit(2);
}

int main(int argc, char **argv)
{
	struct flood f = {.parallel = 20, .sessions = 10000, .rcpts = 1, .from = "sender@client.bench",
	                  .rcpt = "nobody@example.test", .distinct = 200};
	int opt;
	long msg_size = 0;
	while ((opt = getopt(argc, argv, "Pc:n:r:m:f:t:u:")) != -1) {
		switch (opt) {
		case 'P': f.pipelined = 1; break;
		case 'c': f.parallel = atoi(optarg); break;
		case 'n': f.sessions = atol(optarg); break;
		case 'r': f.rcpts = atoi(optarg); break;
		case 'm': msg_size = atol(optarg); break;
		case 'f': f.from = optarg; break;
		case 't': f.rcpt = optarg; break;
		case 'u': f.distinct = atol(optarg); break;
		default: usage();
		}
	}
	if (optind + 1 != argc || f.parallel < 1 || f.sessions < 1 || f.rcpts < 1 || f.rcpts > 1000 || f.distinct < 0 ||
	    strchr(f.rcpt, '@') == NULL || msg_size < 0 || msg_size > 10000000)
		usage();
	if (msg_size > 0)
		body_make(&f, (size_t)msg_size);
	f.out_cap = 1024 + (size_t)f.rcpts * 600 + f.body_len;
	char host[256];
	const char *colon = strrchr(argv[optind], ':');
	if (colon == NULL || (size_t)(colon - argv[optind]) >= sizeof host)
		usage();
	memcpy(host, argv[optind], (size_t)(colon - argv[optind]));
	host[colon - argv[optind]] = '\0';
	f.addr.sin_family = AF_INET;
	f.addr.sin_port = htons((uint16_t)atoi(colon + 1));
	if (inet_pton(AF_INET, host, &f.addr.sin_addr) != 1)
		usage();

	f.base = event_base_new();
	double t0 = now_s();
	for (int i = 0; i < f.parallel && f.started < f.sessions; i++)
		conn_start(&f);
	event_base_dispatch(f.base);
	double dt = now_s() - t0;

	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	double cpu = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
	             (double)ru.ru_stime.tv_usec / 1e6;
	long rcpts = 0;
	for (int i = 0; i < 6; i++)
		rcpts += f.rcpt_class[i];
	printf("sessions=%ld failed=%ld rcpt=%ld rcpt_2xx=%ld rcpt_4xx=%ld rcpt_5xx=%ld delivered=%ld seconds=%.3f"
	       " sessions_per_s=%.0f rcpt_per_s=%.0f messages_per_s=%.0f client_cpu_s=%.3f\n",
	       f.finished, f.failed, rcpts, f.rcpt_class[2], f.rcpt_class[4], f.rcpt_class[5], f.delivered, dt,
	       (double)f.finished / dt, (double)rcpts / dt, (double)f.delivered / dt, cpu);
	event_base_free(f.base);
	free(f.body);
	return f.failed == 0 ? 0 : 1;
}
