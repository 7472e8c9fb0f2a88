/* smtp_session.h - one client SMTP session: created by a worker for each accepted connection,
 * freed by itself when the connection ends. */
#ifndef BACKSTOP_SMTP_SESSION_H
#define BACKSTOP_SMTP_SESSION_H

#include <stdint.h>
#include <sys/socket.h>

#include <event2/util.h>

struct worker;
struct smtp_session;

/* Start a session on a freshly accepted socket (takes ownership of fd). */
void smtp_session_accept(struct worker *w, evutil_socket_t fd, const struct sockaddr *sa, socklen_t salen);

/* Shutdown deadline reached (used by a stopping worker): answer 421 and close, and return 0;
 * or, for a session whose final dot the backend already has, return how long (ms) it may still
 * wait for the backend's reply: it then relays that reply, or closes without one if the backend
 * does not answer, never a 4xx for a message the backend may have taken. */
uint64_t smtp_session_abort(struct smtp_session *s);

/* Next session in the worker's list (for walking it while aborting). */
struct smtp_session *smtp_session_next(struct smtp_session *s);

#endif
