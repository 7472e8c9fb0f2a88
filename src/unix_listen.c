/* unix_listen.c - making a listening unix socket: stale file replaced, live one left alone,
 * created with its final mode (umask around bind), then given its owner. */
#include "unix_listen.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "util.h"

static int unix_address(const char *path, struct sockaddr_un *sun)
{
	memset(sun, 0, sizeof *sun);
	sun->sun_family = AF_UNIX;
	return strbuf_copy(sun->sun_path, sizeof sun->sun_path, path, strlen(path));
}

bool unix_listen_in_use(const char *path)
{
	struct sockaddr_un sun;
	if (unix_address(path, &sun) < 0)
		return false;
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	bool used = fd >= 0 && connect(fd, (const struct sockaddr *)&sun, sizeof sun) == 0;

	if (fd >= 0)
		close(fd);
	return used;
}

int unix_listen(const char *path, unsigned mode, uid_t uid, gid_t gid, char *err, size_t errlen)
{
	struct sockaddr_un sun;
	struct stat st;

	if (unix_address(path, &sun) < 0) {
		snprintf(err, errlen, "path too long");
		return -1;
	}
	if (lstat(path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode)) {
			snprintf(err, errlen, "exists and is not a socket");
			return -1;
		}
		if (unix_listen_in_use(path)) {
			snprintf(err, errlen, "another server is listening on it");
			return -1;
		}
		unlink(path); /* stale, from a previous run */
	}
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		snprintf(err, errlen, "socket: %s", strerror(errno));
		return -1;
	}
	mode_t old = umask((mode_t)(~mode & 0777));
	int rc = bind(fd, (const struct sockaddr *)&sun, sizeof sun);
	int bind_errno = errno;
	umask(old);
	if (rc != 0 || listen(fd, 128) != 0) {
		snprintf(err, errlen, "bind: %s", strerror(rc != 0 ? bind_errno : errno));
		close(fd);
		return -1;
	}
	if (chmod(path, (mode_t)mode) != 0 ||
	    ((uid != (uid_t)-1 || gid != (gid_t)-1) && chown(path, uid, gid) != 0)) {
		snprintf(err, errlen, "chmod/chown: %s", strerror(errno));
		close(fd);
		unlink(path);
		return -1;
	}
	return fd;
}
