/* connlimit.h - admission control shared by all workers: the total number of client
 * connections and the number per client IP address. Thread-safe; O(1) per call. */
#ifndef BACKSTOP_CONNLIMIT_H
#define BACKSTOP_CONNLIMIT_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

enum connlimit_result { CONNLIMIT_OK = 0, CONNLIMIT_TOTAL, CONNLIMIT_PER_IP };

struct connlimit;

struct connlimit *connlimit_new(void);
void connlimit_free(struct connlimit *cl);

/* Admit one connection from sa if below both limits; on CONNLIMIT_OK the caller must call
 * connlimit_release() with the same address when the connection ends. */
enum connlimit_result connlimit_acquire(struct connlimit *cl, const struct sockaddr *sa,
					uint64_t max_total, uint64_t max_per_ip);
void connlimit_release(struct connlimit *cl, const struct sockaddr *sa);

/* Current total, for logs and metrics. */
uint64_t connlimit_total(struct connlimit *cl);
/* Open now, admitted since start and refused by a limit since start (backstop status). */
void connlimit_counts(struct connlimit *cl, uint64_t *open, uint64_t *admitted, uint64_t *refused);

#endif
