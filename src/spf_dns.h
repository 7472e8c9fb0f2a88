/* spf_dns.h - the SPF evaluator's DNS interface (spf_eval.h, struct spf_dns) over a
 * dns_resolver (dns.h): typed lookups through the resolver's cache, answers from its loop. */
#ifndef BACKSTOP_SPF_DNS_H
#define BACKSTOP_SPF_DNS_H

#include "dns.h"
#include "spf_eval.h"

/* Fill dns to ask r (borrowed: it must outlive every check started with dns). */
void spf_dns_init(struct spf_dns *dns, struct dns_resolver *r);

#endif
