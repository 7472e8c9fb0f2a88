/* bev_write.c - a socket bufferevent's output written to its socket on demand (see bev_write.h). */
#include "bev_write.h"

#include <errno.h>

#include <event2/buffer.h>

enum bev_write_result bev_write_now(struct bufferevent *bev)
{
	struct evbuffer *out = bufferevent_get_output(bev);

	if (evbuffer_get_length(out) == 0)
		return BEV_WRITE_DRAINED;
	/* a socket bufferevent keeps the front of its output frozen outside its own writes */
	evbuffer_unfreeze(out, 1);
	errno = 0;
	int n = evbuffer_write(out, bufferevent_getfd(bev));
	int err = errno;
	evbuffer_freeze(out, 1);
	if (n < 0 && err != EAGAIN && err != EINTR) {
		errno = err;
		return BEV_WRITE_ERROR;
	}
	return evbuffer_get_length(out) == 0 ? BEV_WRITE_DRAINED : BEV_WRITE_PARTIAL;
}
