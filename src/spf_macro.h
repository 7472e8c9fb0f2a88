/* spf_macro.h - the SPF macro language (RFC 7208 7): syntax check and expansion of
 * macro-strings (letters s l o d i p v h, and c r t in explanations; transformers, delimiters,
 * URL-escaping of uppercase letters, %% %_ %-). Pure; output bounded by the caller's buffer. */
#ifndef BACKSTOP_SPF_MACRO_H
#define BACKSTOP_SPF_MACRO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <netinet/in.h>

/* The values macros expand to. Strings are NUL-terminated and owned by the caller. */
struct spf_macro_env {
	const char *sender;        /* %{s}: local@domain ("postmaster@domain" for an empty local part) */
	const char *local;         /* %{l} */
	const char *sender_domain; /* %{o} */
	const char *domain;        /* %{d}: the current domain */
	const char *helo;          /* %{h} */
	const char *ptr;           /* %{p}: validated name or "unknown"; NULL: not known (yet) */
	const char *receiver;      /* %{r} (exp only) */
	uint64_t now;              /* %{t} (exp only) */
	int family;                /* AF_INET or AF_INET6: %{i} %{c} %{v} */
	struct in_addr ip4;
	struct in6_addr ip6;
};

enum spf_macro_status {
	SPF_MACRO_OK = 0,
	SPF_MACRO_SYNTAX = -1,   /* not a valid macro-string: permerror */
	SPF_MACRO_TOO_LONG = -2, /* the result did not fit: out holds what fit */
	SPF_MACRO_NEED_P = -3,   /* uses %{p} and env->ptr is NULL */
};

/* Is s (len bytes) a valid macro-string; exp allows the explanation-only letters c r t and
 * spaces (an explanation's TXT text)? *ends_in_macro (if not NULL) tells whether the last item is
 * a macro-expand ("%{..}", "%%", "%_", "%-"). */
bool spf_macro_valid(const char *s, size_t len, bool exp, bool *ends_in_macro);

/* Does the macro-string use letter (lowercase, as in 'p') in any case? */
bool spf_macro_uses(const char *s, size_t len, char letter);

/* Expand s into out (outsz > 0; always NUL-terminated) and set *outlen. */
enum spf_macro_status spf_macro_expand(const char *s, size_t len, const struct spf_macro_env *env, bool exp,
				       char *out, size_t outsz, size_t *outlen);

#endif
