/* unix_listen.h - a listening unix stream socket made safely, for the policy service and the
 * control socket: a stale socket file from an earlier run is replaced, one that a live server
 * still answers on is left alone, and the file never exists with more permissions than asked. */
#ifndef BACKSTOP_UNIX_LISTEN_H
#define BACKSTOP_UNIX_LISTEN_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* Bind and listen on path (non-blocking, close-on-exec) with mode, owned by uid:gid ((uid_t)-1 /
 * (gid_t)-1: unchanged). Returns the socket, or -1 with err filled ("another server is listening
 * on it", "bind: No such file or directory", ...). Call before other threads create files: the
 * umask is changed around bind. */
int unix_listen(const char *path, unsigned mode, uid_t uid, gid_t gid, char *err, size_t errlen);

/* Does a server answer on path? */
bool unix_listen_in_use(const char *path);

#endif
