/* unit_support.h - small helpers shared by the unit tests (header only). */
#ifndef BACKSTOP_UNIT_SUPPORT_H
#define BACKSTOP_UNIT_SUPPORT_H

#include <dirent.h>

/* How many descriptors this process has open (a test compares before and after). */
static inline int count_open_fds(void)
{
	int n = 0;
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	while ((e = readdir(d)) != NULL)
		n += e->d_name[0] != '.';
	closedir(d);
	return n - 1; /* the directory stream's own descriptor */
}

#endif
