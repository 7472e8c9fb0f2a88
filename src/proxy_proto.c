/* proxy_proto.c - PROXY protocol v1 (a text line) and v2 (binary) header parsing. v1 addresses and
 * ports are checked strictly (inet_pton, decimal ports up to 65535 without leading zeros); v2 takes
 * INET and INET6 over STREAM, treats LOCAL and UNSPEC as "the real peer", skips TLVs. */
#include "proxy_proto.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

static const unsigned char v2_sig[12] = { 0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A };

/* ---- version 1: "PROXY TCP4 192.0.2.1 198.51.100.2 56324 25\r\n" ---- */

static int v1_port(const char *s, size_t len, unsigned *port)
{
	unsigned v = 0;

	if (len == 0 || len > 5 || (len > 1 && s[0] == '0'))
		return -1;
	for (size_t i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (unsigned)(s[i] - '0');
	}
	if (v > 65535)
		return -1;
	*port = v;
	return 0;
}

static int v1_addr(int family, const char *s, size_t len, const char *port, size_t plen,
		   struct sockaddr_storage *ss, socklen_t *sslen)
{
	char text[INET6_ADDRSTRLEN];
	unsigned p;

	if (len == 0 || len >= sizeof text || v1_port(port, plen, &p) != 0)
		return -1;
	memcpy(text, s, len);
	text[len] = '\0';
	memset(ss, 0, sizeof *ss);
	if (family == AF_INET) {
		struct sockaddr_in *sin = (struct sockaddr_in *)ss;
		sin->sin_family = AF_INET;
		sin->sin_port = htons((uint16_t)p);
		*sslen = sizeof *sin;
		return inet_pton(AF_INET, text, &sin->sin_addr) == 1 ? 0 : -1;
	}
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
	sin6->sin6_family = AF_INET6;
	sin6->sin6_port = htons((uint16_t)p);
	*sslen = sizeof *sin6;
	return inet_pton(AF_INET6, text, &sin6->sin6_addr) == 1 ? 0 : -1;
}

/* Split line (without CRLF) on single spaces into at most max fields. */
static size_t v1_fields(const char *line, size_t len, const char **f, size_t *flen, size_t max)
{
	size_t n = 0, start = 0;

	for (size_t i = 0; i <= len; i++) {
		if (i < len && line[i] != ' ')
			continue;
		if (n == max)
			return max + 1;
		f[n] = line + start;
		flen[n++] = i - start;
		start = i + 1;
	}
	return n;
}

static enum proxy_parse_result proxy_parse_v1(const unsigned char *buf, size_t len, struct proxy_header *h)
{
	static const char magic[] = "PROXY ";
	size_t m = len < 6 ? len : 6;

	if (memcmp(buf, magic, m) != 0)
		return PROXY_INVALID;
	size_t limit = len < PROXY_V1_MAX - 1 ? len : PROXY_V1_MAX - 1; /* where the CR may be */
	const unsigned char *cr = memchr(buf, '\r', limit);
	if (memchr(buf, '\n', cr ? (size_t)(cr - buf) : limit) != NULL)
		return PROXY_INVALID; /* a bare LF */
	if (cr == NULL)
		return len >= PROXY_V1_MAX - 1 ? PROXY_INVALID : PROXY_INCOMPLETE;
	size_t linelen = (size_t)(cr - buf);
	if (linelen + 1 >= len)
		return PROXY_INCOMPLETE;
	if (cr[1] != '\n')
		return PROXY_INVALID;
	h->version = 1;
	h->len = linelen + 2;
	const char *line = (const char *)buf + 6, *f[6];
	size_t flen[6], n = v1_fields(line, linelen - 6, f, flen, 5);
	if (n >= 1 && flen[0] == 7 && memcmp(f[0], "UNKNOWN", 7) == 0) {
		h->local = true; /* whatever follows is to be ignored */
		return PROXY_DONE;
	}
	if (n != 5 || flen[0] != 4 || (memcmp(f[0], "TCP4", 4) != 0 && memcmp(f[0], "TCP6", 4) != 0))
		return PROXY_INVALID;
	int family = f[0][3] == '4' ? AF_INET : AF_INET6;
	if (v1_addr(family, f[1], flen[1], f[3], flen[3], &h->src, &h->srclen) != 0 ||
	    v1_addr(family, f[2], flen[2], f[4], flen[4], &h->dst, &h->dstlen) != 0)
		return PROXY_INVALID;
	return PROXY_DONE;
}

/* ---- version 2: signature, ver_cmd, fam, len (be16), addresses, TLVs ---- */

static enum proxy_parse_result proxy_parse_v2(const unsigned char *buf, size_t len, struct proxy_header *h)
{
	if (memcmp(buf, v2_sig, len < 12 ? len : 12) != 0)
		return PROXY_INVALID;
	if (len < 16)
		return PROXY_INCOMPLETE;
	unsigned ver = buf[12] >> 4, cmd = buf[12] & 0x0f, af = buf[13] >> 4, proto = buf[13] & 0x0f;
	size_t total = 16 + ((size_t)buf[14] << 8 | buf[15]);
	if (ver != 2 || cmd > 1 || af > 3 || proto > 2 || total > PROXY_V2_MAX)
		return PROXY_INVALID;
	if (len < total)
		return PROXY_INCOMPLETE;
	h->version = 2;
	h->len = total;
	if (cmd == 0 || af == 0 || af == 3) { /* LOCAL (health checks), UNSPEC, UNIX: the real peer */
		h->local = true;
		return PROXY_DONE;
	}
	if (proto != 1)
		return PROXY_INVALID; /* not a stream: not SMTP */
	const unsigned char *a = buf + 16;
	if (af == 1) {
		if (total < 16 + 12)
			return PROXY_INVALID;
		struct sockaddr_in *s = (struct sockaddr_in *)&h->src, *d = (struct sockaddr_in *)&h->dst;
		s->sin_family = d->sin_family = AF_INET;
		memcpy(&s->sin_addr, a, 4);
		memcpy(&d->sin_addr, a + 4, 4);
		memcpy(&s->sin_port, a + 8, 2);
		memcpy(&d->sin_port, a + 10, 2);
		h->srclen = h->dstlen = sizeof *s;
		return PROXY_DONE;
	}
	if (total < 16 + 36)
		return PROXY_INVALID;
	struct sockaddr_in6 *s = (struct sockaddr_in6 *)&h->src, *d = (struct sockaddr_in6 *)&h->dst;
	s->sin6_family = d->sin6_family = AF_INET6;
	memcpy(&s->sin6_addr, a, 16);
	memcpy(&d->sin6_addr, a + 16, 16);
	memcpy(&s->sin6_port, a + 32, 2);
	memcpy(&d->sin6_port, a + 34, 2);
	h->srclen = h->dstlen = sizeof *s;
	return PROXY_DONE;
}

enum proxy_parse_result proxy_parse(const unsigned char *buf, size_t len, struct proxy_header *h)
{
	memset(h, 0, sizeof *h);
	if (len == 0)
		return PROXY_INCOMPLETE;
	if (buf[0] == 'P')
		return proxy_parse_v1(buf, len, h);
	if (buf[0] == v2_sig[0])
		return proxy_parse_v2(buf, len, h);
	return PROXY_INVALID;
}
