/* control.h - the control socket of the running daemon (control_socket): a small line protocol
 * served on the main thread's loop (never on a worker's), for `backstop status`, `backstop
 * reload` and `backstop cache`. Only root, the daemon's own user and members of the socket's
 * group are answered: the peer's credentials (SO_PEERCRED, SO_PEERGROUPS) are checked as well as
 * the file's mode.
 *
 * Protocol: the client sends a request line (at most CONTROL_LINE_MAX octets, ending in LF):
 *   status | reload | cache stats | cache show ADDR | cache purge ADDR|@DOMAIN | cache flush | help
 * The daemon answers with text lines (a line that starts with '.' is sent with one more '.'),
 * then the line ". N", N being the command's exit status (CONTROL_* below). Further requests may
 * follow on the same connection. */
#ifndef BACKSTOP_CONTROL_H
#define BACKSTOP_CONTROL_H

#include <stdio.h>
#include <sys/types.h>

#include <event2/event.h>

#define CONTROL_LINE_MAX 1024

/* Exit statuses carried by the ". N" line (and of the CLI commands). */
#define CONTROL_OK 0          /* done; reload: applied */
#define CONTROL_FAILED 1      /* reload refused (the running configuration kept), cache op failed */
#define CONTROL_USAGE 2       /* bad request (the cache commands use 3, as `backstop cache` always has) */
#define CONTROL_UNREACHABLE 4 /* the daemon could not be reached or refused us (CLI only, and denial) */

struct bs_runtime;
struct vcache;

/* What the control socket answers from, owned by the server and passed in. */
struct control_deps {
	struct event_base *base;                  /* the main thread's loop */
	struct vcache *cache;                     /* the process's verdict cache, or NULL */
	struct bs_runtime *(*runtime)(void *arg); /* the current generation, with a new reference */
	void (*status)(void *arg, FILE *out);     /* the daemon's figures (backstop status) */
	int (*reload)(void *arg, FILE *report);   /* as SIGHUP: CONTROL_OK applied, CONTROL_FAILED refused */
	void *arg;
};

struct control;

/* Make the socket at path (as root, before privileges are dropped) with mode, owned by uid:gid
 * ((uid_t)-1 / (gid_t)-1: unchanged). Peers that may use it: root, the process's user (as it is
 * once control_start runs) and members of group `allowed` ((gid_t)-1: the process's group).
 * NULL with err filled if the socket cannot be made. */
struct control *control_open(const char *path, unsigned mode, uid_t uid, gid_t gid, gid_t allowed, char *err,
			     size_t errlen);
/* Serve on deps->base (main thread, after privileges are dropped). 0 or -1. */
int control_start(struct control *c, const struct control_deps *deps);
/* Close every connection and the socket; the file is removed if it is still the one made here.
 * NULL is fine. */
void control_close(struct control *c);

#endif
