/* proxy_proto.h - the PROXY protocol header (HAProxy's proxy-protocol.txt, versions 1 and 2) that a
 * load balancer sends first on a connection to pass on the client's address. A pure parser over
 * bytes: it tells whether a buffer holds a whole header (and its length), needs more bytes, or
 * can never be one, without reading past the header's end. */
#ifndef BACKSTOP_PROXY_PROTO_H
#define BACKSTOP_PROXY_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

#define PROXY_V1_MAX 107           /* "PROXY TCP6 ..." with CRLF, the spec's bound */
#define PROXY_V2_MAX (16 + 512)    /* signature, header and what we accept of addresses + TLVs */
#define PROXY_HEADER_MAX PROXY_V2_MAX

enum proxy_parse_result { PROXY_INVALID = -1, PROXY_INCOMPLETE = 0, PROXY_DONE = 1 };

struct proxy_header {
	size_t len;                     /* octets of the header (the connection's data starts after) */
	int version;                    /* 1 or 2 */
	bool local;                     /* v2 LOCAL, v1 UNKNOWN, or no address family: use the real peer */
	struct sockaddr_storage src;    /* the client (unless local) */
	struct sockaddr_storage dst;    /* the address the client connected to */
	socklen_t srclen, dstlen;
};

/* Look at the first len octets of a connection. PROXY_DONE with *h filled, PROXY_INCOMPLETE (more
 * octets may make a header: read more, at most PROXY_HEADER_MAX in all), or PROXY_INVALID. */
enum proxy_parse_result proxy_parse(const unsigned char *buf, size_t len, struct proxy_header *h);

#endif
