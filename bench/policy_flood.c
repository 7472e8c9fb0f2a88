/* bench/policy_flood.c - load generator for decisions per second and their latency (built, never
 * installed): Postfix policy delegation requests (SMTPD_POLICY_README: name=value lines, an
 * empty line; the answer is action=... and an empty line), or with -S RCPT commands over SMTP.
 *
 * Opens -c connections and keeps them open; once every one is ready (policy: connected; -S:
 * greeting, EHLO and MAIL answered) the clock starts and each connection sends one request at a
 * time, the next when the answer is in (as Postfix's smtpd asks its policy service), until -n
 * answers have come. -S sends RSET and MAIL after every -k RCPTs (Postfix's recipient limit).
 * Recipients: -t ADDRESS (up to 8, taken in turn), numbered before the '@' modulo -u DISTINCT.
 * Prints one line of key=value figures: answers by class, seconds, rate, latency percentiles in
 * microseconds (send of the request to the end of its answer), the client's own CPU seconds;
 * exit 0 when every connection lasted to the end, 1 otherwise. */
#include <arpa/inet.h>
#include <errno.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define TEMPLATES_MAX 8

enum answer_class { ANS_ACCEPT, ANS_DUNNO, ANS_REJECT, ANS_DEFER, ANS_OTHER, ANS_COUNT };
static const char *const answer_name[ANS_COUNT] = {"accept", "dunno", "reject", "defer", "other"};

/* SMTP phases of a -S connection; a policy connection is always in PH_REQUEST once connected. */
enum phase { PH_CONNECT, PH_GREETING, PH_EHLO, PH_MAIL, PH_READY, PH_REQUEST, PH_RSET, PH_REMAIL };

struct flood {
	struct event_base *base;
	struct sockaddr_in addr;
	int smtp, parallel, per_session;
	long requests, sent, answered, ready, failed;
	long answers[ANS_COUNT];
	uint32_t *latency_us; /* one per answer, in arrival order */
	const char *from, *rcpt[TEMPLATES_MAX];
	int ntemplates;
	long distinct, counter;
	double t0;
	struct conn **conns;
};

struct conn {
	struct flood *f;
	struct event *ev;
	int fd;
	enum phase phase;
	int in_session; /* RCPTs since the last MAIL */
	int dead;
	double sent_at;
	char in[8192];
	size_t inlen;
	char out[4096];
	size_t outlen, outoff;
};

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int out_append(struct conn *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int out_append(struct conn *c, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(c->out + c->outlen, sizeof c->out - c->outlen, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof c->out - c->outlen)
		return -1;
	c->outlen += (size_t)n;
	return 0;
}

/* The next recipient: templates in turn, each numbered before its '@' modulo distinct. */
static void next_rcpt(struct flood *f, char *buf, size_t size)
{
	long k = f->counter++;
	const char *t = f->rcpt[k % f->ntemplates];
	if (f->distinct == 0) {
		snprintf(buf, size, "%s", t);
		return;
	}
	const char *at = strrchr(t, '@');
	snprintf(buf, size, "%.*s%ld%s", (int)(at - t), t, k / f->ntemplates % f->distinct, at);
}

/* The attributes Postfix 3.x smtpd sends at RCPT, in its order. */
static int append_policy_request(struct conn *c, const char *rcpt)
{
	struct flood *f = c->f;
	return out_append(c,
			  "request=smtpd_access_policy\nprotocol_state=RCPT\nprotocol_name=ESMTP\n"
			  "helo_name=client.bench\nqueue_id=\nsender=%s\nrecipient=%s\nrecipient_count=0\n"
			  "client_address=198.51.100.7\nclient_name=unknown\nreverse_client_name=unknown\n"
			  "instance=%x.%lx.0\nsasl_method=\nsasl_username=\nsasl_sender=\nsize=0\n"
			  "ccert_subject=\nccert_issuer=\nccert_fingerprint=\nccert_pubkey_fingerprint=\n"
			  "encryption_protocol=\nencryption_cipher=\nencryption_keysize=0\netrn_domain=\n"
			  "stress=\npolicy_context=\nserver_address=127.0.0.1\nserver_port=25\n"
			  "compatibility_level=3.6\nmail_version=3.7.11\n\n",
			  f->from, rcpt, (unsigned)c->fd, f->counter);
}

/* Queue the next decision request if some are still to be sent; 0 otherwise. */
static int conn_request(struct conn *c)
{
	struct flood *f = c->f;
	if (f->sent >= f->requests)
		return 0;
	char rcpt[512];
	if (f->smtp && c->in_session == f->per_session) {
		c->phase = PH_RSET;
		c->in_session = 0;
		return out_append(c, "RSET\r\nMAIL FROM:<%s>\r\n", f->from);
	}
	next_rcpt(f, rcpt, sizeof rcpt);
	f->sent++;
	c->phase = PH_REQUEST;
	c->in_session++;
	c->sent_at = now_s();
	return f->smtp ? out_append(c, "RCPT TO:<%s>\r\n", rcpt) : append_policy_request(c, rcpt);
}

static void conn_flush_or_fail(struct conn *c);

/* Every connection is ready: start the clock and the first request on each. */
static void start_all(struct flood *f)
{
	f->t0 = now_s();
	for (int i = 0; i < f->parallel; i++) {
		struct conn *c = f->conns[i];
		if (c->dead)
			continue;
		if (conn_request(c) < 0) {
			c->dead = 1;
			f->failed++;
			continue;
		}
		conn_flush_or_fail(c);
	}
}

static void answer(struct conn *c, enum answer_class cls)
{
	struct flood *f = c->f;
	double us = (now_s() - c->sent_at) * 1e6;
	f->latency_us[f->answered] = us > 4e9 ? UINT32_MAX : (uint32_t)us;
	f->answers[cls]++;
	if (++f->answered == f->requests)
		event_base_loopbreak(f->base);
}

static enum answer_class policy_class(const char *v, size_t len)
{
	if (len >= 2 && strncasecmp(v, "OK", 2) == 0 && (len == 2 || v[2] == ' '))
		return ANS_ACCEPT;
	if ((len >= 5 && strncasecmp(v, "DUNNO", 5) == 0) || (len >= 7 && strncasecmp(v, "PREPEND", 7) == 0))
		return ANS_DUNNO; /* no decision (PREPEND: a header, then the next restriction) */
	if ((len >= 6 && strncasecmp(v, "REJECT", 6) == 0) || (len >= 1 && v[0] == '5'))
		return ANS_REJECT;
	if ((len >= 5 && strncasecmp(v, "DEFER", 5) == 0) || (len >= 1 && v[0] == '4'))
		return ANS_DEFER;
	if (len >= 1 && v[0] == '2')
		return ANS_ACCEPT;
	return ANS_OTHER;
}

/* One line of a policy answer; -1 on a protocol error. */
static int policy_line(struct conn *c, const char *line, size_t len, enum answer_class *pending, int *have)
{
	if (len == 0) { /* the answer ends */
		if (!*have)
			return -1;
		answer(c, *pending);
		*have = 0;
		return conn_request(c);
	}
	if (len > 7 && memcmp(line, "action=", 7) == 0) {
		*pending = policy_class(line + 7, len - 7);
		*have = 1;
	}
	return 0;
}

/* One final SMTP reply with this code; -1 ends the connection as failed. */
static int smtp_reply(struct conn *c, int code)
{
	struct flood *f = c->f;
	switch (c->phase) {
	case PH_GREETING:
		c->phase = PH_EHLO;
		return code == 220 ? out_append(c, "EHLO client.bench\r\n") : -1;
	case PH_EHLO:
		c->phase = PH_MAIL;
		return code == 250 ? out_append(c, "MAIL FROM:<%s>\r\n", f->from) : -1;
	case PH_MAIL:
		if (code != 250)
			return -1;
		c->phase = PH_READY;
		if (++f->ready == f->parallel)
			start_all(f);
		return 0;
	case PH_RSET: /* RSET's reply; MAIL's comes next */
		c->phase = PH_REMAIL;
		return code == 250 ? 0 : -1;
	case PH_REMAIL:
		return code == 250 ? conn_request(c) : -1;
	case PH_REQUEST:
		answer(c, code / 100 == 2 ? ANS_ACCEPT : code / 100 == 5 ? ANS_REJECT : code / 100 == 4 ? ANS_DEFER : ANS_OTHER);
		return conn_request(c);
	default:
		return -1;
	}
}

/* Consume every complete line of input; -1 on error. */
static int conn_input(struct conn *c)
{
	size_t start = 0;
	int r = 0;
	enum answer_class cls = ANS_OTHER;
	int have = 0;
	for (;;) {
		char *nl = memchr(c->in + start, '\n', c->inlen - start);
		if (nl == NULL)
			break;
		const char *line = c->in + start;
		size_t len = (size_t)(nl - line);
		if (c->f->smtp) {
			if (len >= 4 && line[3] == '-') {
				start += len + 1;
				continue;
			}
			if (len < 3)
				return -1;
			start += len + 1;
			r = smtp_reply(c, atoi(line));
		} else {
			/* an answer is action=... then an empty line; keep partial answers in the buffer */
			char *end = memmem(line, c->inlen - start, "\n\n", 2);
			if (end == NULL)
				break;
			size_t alen = (size_t)(end - line) + 2;
			const char *p = line;
			while (r == 0 && p < line + alen) {
				const char *e = memchr(p, '\n', (size_t)(line + alen - p));
				r = policy_line(c, p, (size_t)(e - p), &cls, &have);
				p = e + 1;
			}
			start += alen;
		}
		if (r < 0 || c->f->answered == c->f->requests)
			break;
	}
	memmove(c->in, c->in + start, c->inlen - start);
	c->inlen -= start;
	if (r == 0 && c->inlen == sizeof c->in)
		r = -1;
	return r;
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

static void conn_fail(struct conn *c)
{
	if (c->dead)
		return;
	c->dead = 1;
	c->f->failed++;
	event_del(c->ev);
	if (c->phase < PH_READY && ++c->f->ready == c->f->parallel)
		start_all(c->f); /* the others go on without it */
	/* no live connection is left: nothing more will be answered */
	for (int i = 0; i < c->f->parallel; i++)
		if (!c->f->conns[i]->dead)
			return;
	event_base_loopbreak(c->f->base);
}

static void conn_event(evutil_socket_t fd, short what, void *arg);

static void conn_flush_or_fail(struct conn *c)
{
	int w = conn_flush(c);
	if (w < 0) {
		conn_fail(c);
		return;
	}
	short want = (short)(EV_READ | EV_PERSIST | (w > 0 ? EV_WRITE : 0));
	if (event_get_events(c->ev) != want) {
		event_del(c->ev);
		event_assign(c->ev, c->f->base, c->fd, want, conn_event, c);
		event_add(c->ev, NULL);
	}
}

static void conn_event(evutil_socket_t fd, short what, void *arg)
{
	struct conn *c = arg;
	struct flood *f = c->f;
	if (c->phase == PH_CONNECT) { /* the connect finished (EV_WRITE) */
		int err = 0;
		socklen_t len = sizeof err;
		if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0 || err != 0) {
			conn_fail(c);
			return;
		}
		if (f->smtp) {
			c->phase = PH_GREETING;
		} else {
			c->phase = PH_READY;
			if (++f->ready == f->parallel)
				start_all(f);
			if (c->dead)
				return;
		}
		conn_flush_or_fail(c);
		return;
	}
	if (what & EV_READ) {
		ssize_t n = recv(fd, c->in + c->inlen, sizeof c->in - c->inlen, 0);
		if (n < 0 && errno == EAGAIN)
			return;
		if (n <= 0 || (c->inlen += (size_t)n, conn_input(c) < 0)) {
			conn_fail(c);
			return;
		}
	}
	if (!c->dead)
		conn_flush_or_fail(c);
}

static struct conn *conn_open(struct flood *f)
{
	struct conn *c = calloc(1, sizeof *c);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
	if (c == NULL || fd < 0) {
		perror("policy_flood: socket");
		exit(1);
	}
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	c->f = f;
	c->fd = fd;
	if (connect(fd, (struct sockaddr *)&f->addr, sizeof f->addr) < 0 && errno != EINPROGRESS) {
		perror("policy_flood: connect");
		exit(1);
	}
	c->ev = event_new(f->base, fd, EV_WRITE, conn_event, c);
	event_add(c->ev, NULL);
	return c;
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	return (x > y) - (x < y);
}

static uint32_t percentile(const uint32_t *sorted, long n, double p)
{
	if (n == 0)
		return 0;
	long i = (long)(p / 100.0 * (double)n);
	return sorted[i >= n ? n - 1 : i];
}

static void usage(void)
{
	fprintf(stderr, "usage: policy_flood [-S] [-c CONNECTIONS] [-n REQUESTS] [-k RCPTS_PER_MAIL] [-f FROM]\n"
	                "                    [-t RCPT]... [-u DISTINCT] HOST:PORT\n"
	                "  policy requests (default) or, with -S, RCPT commands over SMTP; one at a time per\n"
	                "  connection. Up to 8 -t, taken in turn, each numbered before its '@' modulo -u\n"
	                "  (default -t nobody@example.test -u 200; -u 0 sends them as they are)\n");
	exit(2);
}

static void report(struct flood *f, double dt)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	double cpu = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
	             (double)ru.ru_stime.tv_usec / 1e6;
	qsort(f->latency_us, (size_t)f->answered, sizeof *f->latency_us, cmp_u32);
	printf("mode=%s connections=%d failed=%ld answered=%ld", f->smtp ? "smtp" : "policy", f->parallel, f->failed,
	       f->answered);
	for (int i = 0; i < ANS_COUNT; i++)
		printf(" %s=%ld", answer_name[i], f->answers[i]);
	printf(" seconds=%.3f per_s=%.0f p50_us=%u p90_us=%u p99_us=%u p999_us=%u max_us=%u client_cpu_s=%.3f\n", dt,
	       dt > 0 ? (double)f->answered / dt : 0.0, percentile(f->latency_us, f->answered, 50),
	       percentile(f->latency_us, f->answered, 90), percentile(f->latency_us, f->answered, 99),
	       percentile(f->latency_us, f->answered, 99.9),
	       f->answered ? f->latency_us[f->answered - 1] : 0, cpu);
}

int main(int argc, char **argv)
{
	struct flood f = {.parallel = 20, .requests = 100000, .per_session = 100, .from = "sender@client.bench",
	                  .distinct = 200};
	int opt;
	while ((opt = getopt(argc, argv, "Sc:n:k:f:t:u:")) != -1) {
		switch (opt) {
		case 'S': f.smtp = 1; break;
		case 'c': f.parallel = atoi(optarg); break;
		case 'n': f.requests = atol(optarg); break;
		case 'k': f.per_session = atoi(optarg); break;
		case 'f': f.from = optarg; break;
		case 't':
			if (f.ntemplates == TEMPLATES_MAX || strchr(optarg, '@') == NULL || strlen(optarg) > 400)
				usage();
			f.rcpt[f.ntemplates++] = optarg;
			break;
		case 'u': f.distinct = atol(optarg); break;
		default: usage();
		}
	}
	if (f.ntemplates == 0)
		f.rcpt[f.ntemplates++] = "nobody@example.test";
	if (optind + 1 != argc || f.parallel < 1 || f.parallel > 60000 || f.requests < 1 || f.per_session < 1 ||
	    f.distinct < 0 || strlen(f.from) > 400)
		usage();
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
	f.latency_us = malloc((size_t)f.requests * sizeof *f.latency_us);
	f.conns = calloc((size_t)f.parallel, sizeof *f.conns);
	f.base = event_base_new();
	if (f.latency_us == NULL || f.conns == NULL || f.base == NULL) {
		perror("policy_flood");
		return 1;
	}
	for (int i = 0; i < f.parallel; i++)
		f.conns[i] = conn_open(&f);
	event_base_dispatch(f.base);
	double dt = f.t0 > 0 ? now_s() - f.t0 : 0.0;
	report(&f, dt);
	for (int i = 0; i < f.parallel; i++) {
		event_free(f.conns[i]->ev);
		close(f.conns[i]->fd);
		free(f.conns[i]);
	}
	free(f.conns);
	free(f.latency_us);
	event_base_free(f.base);
	return f.failed == 0 && f.answered == f.requests ? 0 : 1;
}
