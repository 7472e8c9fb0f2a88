/* policyd_proto.c - the Postfix policy delegation protocol over bytes: receiving one request
 * (bounded lines, attributes and size), turning it into an engine request, and writing the
 * action line for a decision. Pure: no I/O, no allocation. */
#include "policyd_proto.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "log.h"
#include "smtp_address.h"
#include "util.h"

/* ---- receiving a request ---- */

void policy_request_reset(struct policy_request *r)
{
	r->len = r->line_start = r->n = 0;
}

static bool policy_name_ok(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] <= 0x20 || (unsigned char)s[i] >= 0x7f)
			return false;
	return true;
}

/* The line buf[line_start, len) is complete (its LF taken): an attribute, or the end. */
static enum policy_feed policy_line_end(struct policy_request *r, const char **why)
{
	char *line = r->buf + r->line_start;
	size_t n = r->len - r->line_start;

	if (n > 0 && line[n - 1] == '\r')
		n--;
	if (n == 0)
		return POLICY_FEED_DONE;
	const char *eq = memchr(line, '=', n);
	size_t nlen = eq ? (size_t)(eq - line) : 0;
	if (eq == NULL)
		*why = "attribute line without '='";
	else if (nlen == 0)
		*why = "empty attribute name";
	else if (nlen > POLICY_NAME_MAX)
		*why = "attribute name too long";
	else if (!policy_name_ok(line, nlen))
		*why = "attribute name with spaces or control characters";
	else if (n - nlen - 1 > POLICY_VALUE_MAX)
		*why = "attribute value too long";
	else if (r->n >= POLICY_ATTRS_MAX)
		*why = "too many attributes";
	else
		*why = NULL;
	if (*why != NULL)
		return POLICY_FEED_BAD;
	line[nlen] = '\0';
	line[n] = '\0';
	r->buf[r->len] = '\0'; /* where the LF was */
	r->attrs[r->n].name = (uint16_t)r->line_start;
	r->attrs[r->n].value = (uint16_t)(r->line_start + nlen + 1);
	r->n++;
	r->len++;
	r->line_start = r->len;
	return POLICY_FEED_MORE;
}

enum policy_feed policy_request_feed(struct policy_request *r, const char *data, size_t len, size_t *consumed,
				     const char **why)
{
	size_t i = 0;

	*why = NULL;
	while (i < len) {
		const char *lf = memchr(data + i, '\n', len - i);
		size_t chunk = lf ? (size_t)(lf - (data + i)) : len - i;
		*consumed = i;
		if (memchr(data + i, '\0', chunk) != NULL) {
			*why = "NUL byte in request";
			return POLICY_FEED_BAD;
		}
		if (r->len + chunk + (lf ? 1 : 0) > POLICY_REQUEST_MAX) {
			*why = "request too long";
			return POLICY_FEED_BAD;
		}
		memcpy(r->buf + r->len, data + i, chunk);
		r->len += chunk;
		i += chunk;
		if (r->len - r->line_start > POLICY_NAME_MAX + POLICY_VALUE_MAX + 2) { /* '=' and a CR */
			*why = "attribute line too long";
			return POLICY_FEED_BAD;
		}
		if (lf == NULL)
			break;
		i++;
		enum policy_feed f = policy_line_end(r, why);
		if (f != POLICY_FEED_MORE) {
			*consumed = i;
			return f;
		}
	}
	*consumed = i;
	return POLICY_FEED_MORE;
}

const char *policy_request_get(const struct policy_request *r, const char *name)
{
	for (size_t i = r->n; i-- > 0;)
		if (strcmp(r->buf + r->attrs[i].name, name) == 0)
			return r->buf + r->attrs[i].value;
	return NULL;
}

/* ---- decoding it ---- */

/* value as "<value>"; a local part that needs quoting (Postfix sends it unquoted: john
 * doe@example.com) is quoted on a second try. */
static bool policy_parse_address(const char *v, bool allow_null, struct smtp_address *out)
{
	char path[2 * SMTP_PATH_MAX + 8];
	size_t n = strlen(v), used = 0, o = 0;

	if (n + 2 >= sizeof path)
		return false;
	o = (size_t)snprintf(path, sizeof path, "<%s>", v);
	if (smtp_path_parse(path, o, allow_null, true, out, &used) == ADDR_OK && used == o)
		return true;
	const char *at = strrchr(v, '@');
	if (at == NULL || at == v)
		return false;
	o = 0;
	path[o++] = '<';
	path[o++] = '"';
	for (const char *p = v; p < at && o < sizeof path - 4; p++) {
		if (*p == '"' || *p == '\\')
			path[o++] = '\\';
		path[o++] = *p;
	}
	path[o++] = '"';
	size_t dn = strlen(at);
	if (o + dn + 2 > sizeof path)
		return false;
	memcpy(path + o, at, dn);
	o += dn;
	path[o++] = '>';
	return smtp_path_parse(path, o, false, true, out, &used) == ADDR_OK && used == o;
}

static bool policy_parse_uint(const char *v, uint64_t max, uint64_t *out)
{
	uint64_t x = 0;

	if (v == NULL || *v == '\0' || strspn(v, "0123456789") != strlen(v) || strlen(v) > 19)
		return false;
	for (; *v; v++)
		x = x * 10 + (uint64_t)(*v - '0');
	if (x > max)
		return false;
	*out = x;
	return true;
}

/* A bounded copy with control characters made harmless. */
static void policy_copy_text(char *dst, size_t dstsz, const char *src)
{
	size_t o = 0;

	for (; src && *src && o + 1 < dstsz; src++)
		dst[o++] = ((unsigned char)*src < 0x20 || *src == 0x7f) ? '?' : *src;
	dst[o] = '\0';
}

static void policy_client(const struct policy_request *r, const char *session_id, struct engine_request *req)
{
	const char *addr = policy_request_get(r, "client_address");
	struct sockaddr_storage ss;
	socklen_t len = 0;
	uint64_t port = 0;

	memset(&ss, 0, sizeof ss);
	policy_parse_uint(policy_request_get(r, "client_port"), 65535, &port);
	if (addr != NULL) {
		struct sockaddr_in *in = (struct sockaddr_in *)(void *)&ss;
		struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)(void *)&ss;
		if (inet_pton(AF_INET, addr, &in->sin_addr) == 1) {
			in->sin_family = AF_INET;
			in->sin_port = htons((uint16_t)port);
			len = sizeof *in;
		} else if (inet_pton(AF_INET6, addr, &in6->sin6_addr) == 1) {
			in6->sin6_family = AF_INET6;
			in6->sin6_port = htons((uint16_t)port);
			len = sizeof *in6;
		}
	}
	engine_request_init(req, ENGINE_FRONTEND_POLICY, session_id, len ? (const struct sockaddr *)&ss : NULL, len);
}

static bool policy_stage(const char *state, enum engine_stage *stage)
{
	static const struct { const char *name; enum engine_stage stage; } map[] = {
		{ "CONNECT", ENGINE_STAGE_CONNECT }, { "EHLO", ENGINE_STAGE_HELO },
		{ "HELO", ENGINE_STAGE_HELO },       { "MAIL", ENGINE_STAGE_MAIL },
		{ "RCPT", ENGINE_STAGE_RCPT },       { "DATA", ENGINE_STAGE_DATA },
		{ "END-OF-MESSAGE", ENGINE_STAGE_EOD },
	};
	for (size_t i = 0; state && i < ARRAY_SIZE(map); i++)
		if (strcasecmp(state, map[i].name) == 0) {
			*stage = map[i].stage;
			return true;
		}
	return false;
}

void policy_request_decode(const struct policy_request *r, const struct bs_config *cfg, const char *session_id,
			   struct engine_request *req, struct policy_query *q)
{
	const char *type = policy_request_get(r, "request");
	const char *state = policy_request_get(r, "protocol_state");
	const char *v;
	uint64_t x;

	memset(q, 0, offsetof(struct policy_query, helo)); /* the addresses are set before use */
	q->helo[0] = '\0';
	policy_client(r, session_id, req);
	log_sanitize(q->state, sizeof q->state, state ? state : "-", state ? strlen(state) : 1);
	if ((v = policy_request_get(r, "instance")) != NULL)
		log_sanitize(q->instance, sizeof q->instance, v, strlen(v));
	if ((v = policy_request_get(r, "queue_id")) != NULL)
		log_sanitize(q->queue_id, sizeof q->queue_id, v, strlen(v));
	if ((v = policy_request_get(r, "recipient")) != NULL)
		log_sanitize(q->rcpt_raw, sizeof q->rcpt_raw, v, strlen(v));
	policy_copy_text(q->helo, sizeof q->helo, policy_request_get(r, "helo_name"));
	req->helo = q->helo;
	policy_copy_text(req->tls_version, sizeof req->tls_version, policy_request_get(r, "encryption_protocol"));
	policy_copy_text(req->tls_cipher, sizeof req->tls_cipher, policy_request_get(r, "encryption_cipher"));
	if (policy_parse_uint(policy_request_get(r, "recipient_count"), 1000000000, &x))
		req->nrcpts = (unsigned)x;

	if (type == NULL || strcmp(type, "smtpd_access_policy") != 0) {
		q->why = "not an smtpd_access_policy request";
		return;
	}
	if (!policy_stage(state, &req->stage)) {
		q->why = (state && (!strcasecmp(state, "VRFY") || !strcasecmp(state, "ETRN")))
			? "not decided at this stage" : "unknown protocol_state";
		return;
	}
	q->staged = true;
	if (policy_parse_uint(policy_request_get(r, "size"), UINT64_MAX / 2, &x)) {
		req->size = x;
		req->size_known = req->stage == ENGINE_STAGE_EOD || x > 0; /* 0: no SIZE= at MAIL */
	}
	v = policy_request_get(r, "sender");
	if (req->stage >= ENGINE_STAGE_MAIL && v != NULL && policy_parse_address(v, true, &q->sender))
		engine_request_set_sender(req, &q->sender);
	v = policy_request_get(r, "recipient");
	if (req->stage == ENGINE_STAGE_RCPT && (v == NULL || v[0] == '\0')) {
		q->why = "no recipient";
		return;
	}
	if (req->stage == ENGINE_STAGE_RCPT && !policy_parse_address(v, false, &q->rcpt)) {
		q->why = "unparsable recipient";
		return;
	}
	if (req->stage >= ENGINE_STAGE_RCPT && v != NULL && v[0] != '\0' &&
	    (req->stage == ENGINE_STAGE_RCPT || policy_parse_address(v, false, &q->rcpt)))
		engine_request_set_rcpt(req, cfg, &q->rcpt);
	q->ask = true;
}

/* ---- the answer ---- */

/* "X.Y.Z" with X the class wanted. */
static bool policy_enhanced_ok(const char *e, char cls)
{
	size_t a, b;

	if (e == NULL || e[0] != cls || e[1] != '.')
		return false;
	a = strspn(e + 2, "0123456789");
	if (a < 1 || a > 3 || e[2 + a] != '.')
		return false;
	b = strspn(e + 3 + a, "0123456789");
	return b >= 1 && b <= 3 && e[3 + a + b] == '\0';
}

/* Postfix writes "<address>: Recipient address rejected: " in front of our text: take ours off. */
static const char *policy_text(const char *text)
{
	static const char *const prefixes[] = {
		"Recipient address rejected: ", "Sender address rejected: ", "Client host rejected: ",
		"Helo command rejected: ", "Data command rejected: ", "End-of-data rejected: ",
	};
	const char *p = text;

	if (p[0] == '<') {
		const char *end = strstr(p, ">: ");
		if (end != NULL)
			p = end + 3;
	}
	for (size_t i = 0; i < ARRAY_SIZE(prefixes); i++)
		if (strncmp(p, prefixes[i], strlen(prefixes[i])) == 0) {
			p += strlen(prefixes[i]);
			break;
		}
	return p;
}

/* Append src to out at *o as one line: control characters become spaces; CRLF followed by
 * white space (a folded header) is unfolded; a CRLF that is not stops the copy. */
static void policy_put_line(char *out, size_t outsz, size_t *o, const char *src)
{
	for (const char *s = src; *s && *o + 3 < outsz; s++) {
		if (s[0] == '\r' && s[1] == '\n') {
			if (s[2] != ' ' && s[2] != '\t')
				break;
			s++;
			continue;
		}
		out[(*o)++] = ((unsigned char)*s < 0x20 || *s == 0x7f) ? ' ' : *s;
	}
}

static size_t policy_finish(char *out, size_t outsz, size_t o)
{
	if (o + 3 > outsz)
		o = outsz - 3;
	out[o++] = '\n';
	out[o++] = '\n';
	out[o] = '\0';
	return o;
}

size_t policy_action_dunno(char *out, size_t outsz)
{
	return (size_t)snprintf(out, outsz, "action=DUNNO\n\n");
}

size_t policy_action_format(const struct engine_decision *d, char *out, size_t outsz)
{
	const char *text = policy_text(d->text);
	int n;

	if (d->result == CHECK_REJECT) {
		int code = d->code >= 500 && d->code <= 599 ? d->code : 550;
		n = snprintf(out, outsz, "action=%03d %s ", code,
			     policy_enhanced_ok(d->enhanced, '5') ? d->enhanced : "5.7.1");
		if (text[0] == '\0')
			text = "Access denied";
	} else if (d->result == CHECK_DEFER) {
		n = snprintf(out, outsz, "action=DEFER_IF_PERMIT %s ",
			     policy_enhanced_ok(d->enhanced, '4') ? d->enhanced : "4.7.1");
		if (text[0] == '\0')
			text = "Try again later";
	} else if (d->headers[0] != '\0') {
		n = snprintf(out, outsz, "action=PREPEND ");
		text = d->headers;
	} else {
		return policy_action_dunno(out, outsz);
	}
	size_t o = n < 0 ? 0 : (size_t)n;
	if (o >= outsz)
		o = outsz - 1;
	policy_put_line(out, outsz, &o, text);
	return policy_finish(out, outsz, o);
}
