/* bev_write.h - write a socket bufferevent's output straight to its socket, now, instead of
 * waiting for the write event: one write(2) per loop turn and no epoll_ctl while the kernel
 * takes everything. Used by the session (replies) and the SMTP client (commands, data). */
#ifndef BACKSTOP_BEV_WRITE_H
#define BACKSTOP_BEV_WRITE_H

#include <event2/bufferevent.h>

enum bev_write_result {
	BEV_WRITE_DRAINED, /* the output is empty */
	BEV_WRITE_PARTIAL, /* the kernel held some back (or the write was interrupted) */
	BEV_WRITE_ERROR,   /* the socket failed; errno says why */
};

/* bev must be a plain socket bufferevent (bufferevent_socket_new). What is left, or the error,
 * is the caller's to hand back to the bufferevent (bufferevent_enable(bev, EV_WRITE)). */
enum bev_write_result bev_write_now(struct bufferevent *bev);

#endif
