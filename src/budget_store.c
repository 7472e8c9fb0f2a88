/* budget_store.c - the budget store interface's dispatch (budget_store.h), and what every store
 * shares: the rule syntax ("25/1h"), the over-budget test and a client's keys. */
#include "budget_store.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "config_value.h"
#include "redis_target.h"
#include "util.h"

struct budget_query *budget_store_get(struct budget_store *st, struct event_base *base, const char *const *keys,
				      const struct budget_rule *rules, size_t n, uint64_t now_ms, budget_cb cb,
				      void *arg)
{
	return st->type->get(st->state, base, keys, rules, n, now_ms, cb, arg);
}

struct budget_query *budget_store_add(struct budget_store *st, struct event_base *base, const char *const *keys,
				      const struct budget_rule *rules, size_t n, uint64_t now_ms, budget_cb cb,
				      void *arg)
{
	return st->type->add(st->state, base, keys, rules, n, now_ms, cb, arg);
}

struct budget_query *budget_store_take(struct budget_store *st, struct event_base *base, const char *key,
				       uint64_t second, unsigned n, unsigned limit, budget_take_cb cb, void *arg)
{
	if (st == NULL || st->type->take == NULL) {
		cb(arg, n);
		return NULL;
	}
	return st->type->take(st->state, base, key, second, n, limit, cb, arg);
}

bool budget_store_shares_rates(const struct budget_store *st)
{
	return st != NULL && st->type->take != NULL;
}

void budget_store_cancel(struct budget_store *st, struct budget_query *q)
{
	if (q != NULL && st->type->cancel)
		st->type->cancel(q);
}

void budget_store_stats(struct budget_store *st, FILE *out)
{
	if (st != NULL && st->type->stats)
		st->type->stats(st->state, out);
}

void budget_store_free(struct budget_store *st)
{
	if (st == NULL)
		return;
	st->type->free(st->state);
	free(st);
}

void budget_store_forget_base(struct budget_store *st, struct event_base *base)
{
	if (st != NULL && st->type->forget_base)
		st->type->forget_base(st->state, base);
}

struct budget_store *budget_store_open(const struct bs_config *cfg, char *why, size_t whysz)
{
	enum redis_kind kind;
	const char *arg;

	if (redis_target_kind(cfg->cache, &kind, &arg))
		return budget_redis_new(cfg, (size_t)cfg->harvest_max_entries, why, whysz);
	return budget_memory_new((size_t)cfg->harvest_max_entries);
}

bool budget_over(const struct budget_state *st, const struct budget_rule *rule, uint64_t now_ms)
{
	if (rule->limit == 0)
		return false;
	return st->count >= rule->limit || st->penalty_until_ms > now_ms;
}

int budget_rule_parse(const char *text, struct budget_rule *out, const char **why)
{
	char num[32];
	uint64_t limit = 0, window = 0;
	const char *slash = strchr(text, '/');

	memset(out, 0, sizeof *out);
	if (slash == NULL) {
		if (cfgval_uint(text, &limit, why) != 0 || limit != 0) {
			*why = "expected COUNT/DURATION (25/1h), or 0 for no budget";
			return -1;
		}
		return 0;
	}
	if ((size_t)(slash - text) >= sizeof num) {
		*why = "expected COUNT/DURATION (25/1h)";
		return -1;
	}
	memcpy(num, text, (size_t)(slash - text));
	num[slash - text] = '\0';
	if (cfgval_uint(num, &limit, why) != 0 || limit > 1000000) {
		*why = "the count of COUNT/DURATION must be a number from 0 to 1000000";
		return -1;
	}
	if (cfgval_duration(slash + 1, &window, why) != 0 || window < 1000 || window > 7ULL * 86400 * 1000) {
		*why = "the duration of COUNT/DURATION must be from 1s to 7d (25/1h)";
		return -1;
	}
	out->limit = (uint32_t)limit;
	out->window_ms = window;
	return 0;
}

int budget_rule_check(const char *text, const char **why)
{
	struct budget_rule r;
	return budget_rule_parse(text, &r, why);
}

static void budget_mask(uint8_t *bytes, size_t len, unsigned prefix)
{
	for (size_t i = 0; i < len; i++) {
		unsigned keep = prefix >= 8 * (i + 1) ? 8 : prefix > 8 * i ? prefix - 8 * (unsigned)i : 0;
		bytes[i] &= (uint8_t)(keep == 8 ? 0xff : (0xff00 >> keep) & 0xff);
	}
}

int budget_client_keys(const struct sockaddr *sa, unsigned v4_prefix, unsigned v6_prefix,
		       char addr_key[BUDGET_KEY_MAX], char net_key[BUDGET_KEY_MAX])
{
	char text[INET6_ADDRSTRLEN], net[INET6_ADDRSTRLEN];
	uint8_t b[16];
	int family;
	unsigned prefix;

	if (sa->sa_family == AF_INET) {
		memcpy(b, &((const struct sockaddr_in *)(const void *)sa)->sin_addr, 4);
		family = AF_INET;
	} else if (sa->sa_family == AF_INET6) {
		const struct in6_addr *a6 = &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr;
		if (IN6_IS_ADDR_V4MAPPED(a6)) {
			memcpy(b, a6->s6_addr + 12, 4);
			family = AF_INET;
		} else {
			memcpy(b, a6->s6_addr, 16);
			family = AF_INET6;
		}
	} else {
		return -1;
	}
	size_t len = family == AF_INET ? 4 : 16;
	prefix = family == AF_INET ? (v4_prefix > 32 ? 32 : v4_prefix) : (v6_prefix > 128 ? 128 : v6_prefix);
	inet_ntop(family, b, text, sizeof text);
	budget_mask(b, len, prefix);
	inet_ntop(family, b, net, sizeof net);
	snprintf(addr_key, BUDGET_KEY_MAX, "a:%s", text);
	snprintf(net_key, BUDGET_KEY_MAX, "n:%s/%u", net, prefix);
	return 0;
}
