/* dns_msg.c - reading a DNS response (RFC 1035 4.1) into a typed answer: the header's RCODE,
 * the question skipped, the answer section walked along the CNAME chain from the name asked,
 * the records of the type asked kept, and for a negative answer the SOA of the authority
 * section giving its TTL (RFC 2308 5). Names are read with compression pointers, bounded. */
#include "dns_msg.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

#define CNAME_HOPS_MAX 8
#define TYPE_CNAME 5
#define TYPE_SOA 6

struct dns_block {
	atomic_int refs;
	struct dns_answer a;
	struct dns_rr rr[]; /* a.count of them, then their texts */
};

/* The records while they are read: texts as offsets into txt. */
struct builder {
	struct dns_rr rr[DNS_RR_MAX];
	size_t off[DNS_RR_MAX];
	size_t n, total;
	char *txt;
	size_t len, cap;
};

const char *dns_type_name(enum dns_type t)
{
	switch (t) {
	case DNS_TYPE_A: return "A";
	case DNS_TYPE_PTR: return "PTR";
	case DNS_TYPE_MX: return "MX";
	case DNS_TYPE_TXT: return "TXT";
	case DNS_TYPE_AAAA: return "AAAA";
	}
	return "?";
}

const char *dns_result_name(enum dns_result r)
{
	static const char *const names[] = { "ok", "nxdomain", "nodata", "tempfail" };
	return (unsigned)r < ARRAY_SIZE(names) ? names[r] : "?";
}

static unsigned get16(const unsigned char *p)
{
	return (unsigned)p[0] << 8 | p[1];
}

static uint32_t get32(const unsigned char *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Read the name at *off into out (dotted, no trailing dot, "" for the root); *off moves past it
 * in place (not along pointers). -1 on a malformed name, a pointer loop, a label holding a dot
 * or a NUL, or a name over DNS_NAME_MAX. */
static int read_name(const unsigned char *msg, size_t len, size_t *off, char *out)
{
	size_t at = *off, o = 0, end = 0;
	unsigned hops = 0;

	for (;;) {
		if (at >= len)
			return -1;
		unsigned l = msg[at];
		if ((l & 0xc0) == 0xc0) {
			if (at + 1 >= len || ++hops > 64)
				return -1;
			if (end == 0)
				end = at + 2;
			at = (size_t)(l & 0x3f) << 8 | msg[at + 1];
			continue;
		}
		if (l & 0xc0)
			return -1;
		if (l == 0) {
			if (end == 0)
				end = at + 1;
			break;
		}
		if (at + 1 + l > len || o + l + 1 > DNS_NAME_MAX)
			return -1;
		if (o > 0)
			out[o++] = '.';
		for (unsigned i = 0; i < l; i++) {
			unsigned char c = msg[at + 1 + i];
			if (c == '.' || c == '\0')
				return -1;
			out[o++] = (char)c;
		}
		at += 1 + l;
	}
	out[o] = '\0';
	*off = end;
	return 0;
}

static bool name_eq(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	while (la > 0 && a[la - 1] == '.')
		la--;
	while (lb > 0 && b[lb - 1] == '.')
		lb--;
	return ascii_casecmp_n(a, la, b, lb) == 0;
}

/* One resource record's fixed part. */
struct rr_head {
	char name[DNS_NAME_MAX + 1];
	unsigned type, class;
	uint32_t ttl;
	size_t rdata, rdlen;
};

static int read_rr(const unsigned char *msg, size_t len, size_t *off, struct rr_head *h)
{
	if (read_name(msg, len, off, h->name) < 0 || *off + 10 > len)
		return -1;
	const unsigned char *p = msg + *off;
	h->type = get16(p);
	h->class = get16(p + 2);
	h->ttl = get32(p + 4);
	if (h->ttl > 0x7fffffffu) /* RFC 2181 8: as if zero */
		h->ttl = 0;
	h->rdlen = get16(p + 8);
	h->rdata = *off + 10;
	if (h->rdata + h->rdlen > len)
		return -1;
	*off = h->rdata + h->rdlen;
	return 0;
}

static void b_text(struct builder *b, const void *data, size_t n)
{
	if (b->len + n + 1 > b->cap) {
		b->cap = (b->len + n + 1) * 2;
		b->txt = xrealloc(b->txt, b->cap);
	}
	memcpy(b->txt + b->len, data, n);
	b->len += n;
	b->txt[b->len] = '\0';
}

/* One record of the type asked: kept (or only counted past DNS_RR_MAX); -1 if malformed. */
static int b_record(struct builder *b, const unsigned char *msg, const struct rr_head *h, enum dns_type type)
{
	struct dns_rr rr;
	char name[DNS_NAME_MAX + 1];
	size_t at = h->rdata, end = h->rdata + h->rdlen, start = b->len;
	bool keep = b->n < DNS_RR_MAX, text = type != DNS_TYPE_A && type != DNS_TYPE_AAAA;

	memset(&rr, 0, sizeof rr);
	if (type == DNS_TYPE_A || type == DNS_TYPE_AAAA) {
		if (h->rdlen != (type == DNS_TYPE_A ? 4u : 16u))
			return -1;
		memcpy(rr.addr, msg + at, h->rdlen);
	} else if (type == DNS_TYPE_MX || type == DNS_TYPE_PTR) {
		if (type == DNS_TYPE_MX) {
			if (h->rdlen < 3)
				return -1;
			rr.preference = (uint16_t)get16(msg + at);
			at += 2;
		}
		if (read_name(msg, end, &at, name) < 0 || at != end)
			return -1;
		if (keep)
			b_text(b, name, strlen(name));
	} else {
		while (at < end) {
			size_t l = msg[at];
			if (at + 1 + l > end) {
				b->len = start;
				return -1;
			}
			if (keep)
				b_text(b, msg + at + 1, l);
			at += 1 + l;
		}
	}
	b->total++;
	if (!keep)
		return 0;
	if (text) {
		if (b->len == start)
			b_text(b, "", 0);
		rr.len = b->len - start;
		b->off[b->n] = start;
		b->len++; /* past the record's NUL */
	}
	b->rr[b->n++] = rr;
	return 0;
}

static struct dns_answer *answer_build(const struct builder *b, enum dns_type type, enum dns_result result,
				       uint32_t ttl, const char *error)
{
	size_t n = result == DNS_RESULT_OK ? b->n : 0, tl = result == DNS_RESULT_OK ? b->len : 0;
	struct dns_block *blk = xmalloc(sizeof *blk + n * sizeof blk->rr[0] + tl + 1);
	char *text = (char *)(blk->rr + n);

	atomic_init(&blk->refs, 1);
	memset(&blk->a, 0, sizeof blk->a);
	blk->a.result = result;
	blk->a.type = type;
	blk->a.ttl = ttl > DNS_TTL_MAX ? DNS_TTL_MAX : ttl;
	blk->a.error = error;
	blk->a.count = n;
	blk->a.total = result == DNS_RESULT_OK ? b->total : 0;
	blk->a.rr = blk->rr;
	if (tl > 0)
		memcpy(text, b->txt, tl);
	text[tl] = '\0';
	for (size_t i = 0; i < n; i++) {
		blk->rr[i] = b->rr[i];
		blk->rr[i].text = type == DNS_TYPE_A || type == DNS_TYPE_AAAA ? NULL : text + b->off[i];
	}
	return &blk->a;
}

struct dns_answer *dns_answer_new_empty(enum dns_type type, enum dns_result result, const char *error)
{
	struct builder b = { .n = 0 };
	return answer_build(&b, type, result == DNS_RESULT_OK ? DNS_RESULT_TEMPFAIL : result, 0, error);
}

/* The TTL of a negative answer: the authority section's SOA (RFC 2308 5); 0 without one. */
static uint32_t negative_ttl(const unsigned char *msg, size_t len, size_t off, unsigned ancount, unsigned nscount)
{
	struct rr_head h;
	char name[DNS_NAME_MAX + 1];

	for (unsigned i = 0; i < ancount; i++)
		if (read_rr(msg, len, &off, &h) < 0)
			return 0;
	for (unsigned i = 0; i < nscount; i++) {
		if (read_rr(msg, len, &off, &h) < 0)
			return 0;
		if (h.type != TYPE_SOA)
			continue;
		size_t at = h.rdata, end = h.rdata + h.rdlen;
		if (read_name(msg, end, &at, name) < 0 || read_name(msg, end, &at, name) < 0 || at + 20 != end)
			return 0;
		uint32_t minimum = get32(msg + at + 16);
		return h.ttl < minimum ? h.ttl : minimum;
	}
	return 0;
}

struct dns_answer *dns_msg_parse(const unsigned char *msg, size_t len, const char *qname, enum dns_type type)
{
	char cur[DNS_NAME_MAX + 1];
	struct builder *b;
	struct rr_head h;
	struct dns_answer *a;

	if (len < 12)
		return dns_answer_new_empty(type, DNS_RESULT_TEMPFAIL, "short reply");
	unsigned flags = get16(msg + 2), rcode = flags & 0xf;
	unsigned qd = get16(msg + 4), an = get16(msg + 6), ns = get16(msg + 8);
	if (!(flags & 0x8000))
		return dns_answer_new_empty(type, DNS_RESULT_TEMPFAIL, "not a reply");
	if (rcode != 0 && rcode != 3) {
		static const char *const why[] = { "", "FORMERR", "SERVFAIL", "", "NOTIMP", "REFUSED" };
		return dns_answer_new_empty(type, DNS_RESULT_TEMPFAIL, rcode < ARRAY_SIZE(why) ? why[rcode] : "RCODE");
	}
	size_t off = 12;
	for (unsigned i = 0; i < qd; i++) {
		if (read_name(msg, len, &off, cur) < 0 || off + 4 > len)
			return dns_answer_new_empty(type, DNS_RESULT_TEMPFAIL, "malformed reply");
		off += 4;
	}
	size_t answers = off;
	if (strbuf_copy(cur, sizeof cur, qname, strlen(qname)) < 0)
		return dns_answer_new_empty(type, DNS_RESULT_TEMPFAIL, "name too long");
	uint32_t ttl = UINT32_MAX;
	/* follow the CNAME chain from qname: each hop restarts the walk (any order is allowed) */
	for (unsigned hop = 0; hop <= CNAME_HOPS_MAX; hop++) {
		bool moved = false;
		off = answers;
		for (unsigned i = 0; i < an && !moved; i++) {
			if (read_rr(msg, len, &off, &h) < 0)
				return dns_answer_new_empty(type, DNS_RESULT_TEMPFAIL, "malformed reply");
			if (h.type == TYPE_CNAME && h.class == 1 && name_eq(h.name, cur)) {
				size_t at = h.rdata;
				if (read_name(msg, h.rdata + h.rdlen, &at, cur) < 0)
					return dns_answer_new_empty(type, DNS_RESULT_TEMPFAIL, "malformed CNAME");
				ttl = h.ttl < ttl ? h.ttl : ttl;
				moved = true;
			}
		}
		if (!moved)
			break;
		if (hop == CNAME_HOPS_MAX)
			return dns_answer_new_empty(type, DNS_RESULT_TEMPFAIL, "CNAME chain too long");
	}
	b = xcalloc(1, sizeof *b);
	off = answers;
	for (unsigned i = 0; i < an; i++) {
		if (read_rr(msg, len, &off, &h) < 0)
			break;
		if (h.type != (unsigned)type || h.class != 1 || !name_eq(h.name, cur))
			continue;
		if (b_record(b, msg, &h, type) == 0)
			ttl = h.ttl < ttl ? h.ttl : ttl;
	}
	if (b->total > 0) {
		a = answer_build(b, type, DNS_RESULT_OK, ttl, NULL);
	} else {
		uint32_t nttl = negative_ttl(msg, len, answers, an, ns);
		a = answer_build(b, type, rcode == 3 ? DNS_RESULT_NXDOMAIN : DNS_RESULT_NODATA, nttl,
				 rcode == 3 ? "NXDOMAIN" : "no such record");
	}
	free(b->txt);
	free(b);
	return a;
}

struct dns_answer *dns_answer_ref(struct dns_answer *a)
{
	struct dns_block *blk = (struct dns_block *)((char *)a - offsetof(struct dns_block, a));
	atomic_fetch_add_explicit(&blk->refs, 1, memory_order_relaxed);
	return a;
}

void dns_answer_unref(struct dns_answer *a)
{
	if (a == NULL)
		return;
	struct dns_block *blk = (struct dns_block *)((char *)a - offsetof(struct dns_block, a));
	if (atomic_fetch_sub_explicit(&blk->refs, 1, memory_order_acq_rel) == 1)
		free(blk);
}
