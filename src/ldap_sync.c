/* ldap_sync.c - `backstop sync`: directory export (ldap_export.c) into a map: file. Compares
 * with the current map, shows or applies the difference, guards against a shrinking or empty
 * export, and replaces the file atomically (temp file in the same directory, fsync, rename). */
#include "ldap_sync.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <libgen.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "ldap_export.h"
#include "rcpt.h"
#include "util.h"

struct sync_opts {
	const char *config;
	const char *spec;   /* "ldap:NAME", a spec of the ldap: source */
	const char *name;   /* NAME, in spec */
	const char *output;
	double max_shrink;  /* percent */
	bool dry_run, force;
};

/* The map as it is: its bytes and its keys, sorted. */
struct sync_map {
	char *content;
	size_t len;
	char **keys;
	size_t n;
	bool exists;
};

static void sync_usage(FILE *out)
{
	fprintf(out, "usage: backstop sync [-c FILE] ldap:NAME --output PATH [--dry-run] "
		     "[--max-shrink PCT] [--force]\n");
}

static int sync_parse(int argc, char **argv, struct sync_opts *o)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' }, { "output", required_argument, NULL, 'o' },
		{ "dry-run", no_argument, NULL, 'n' },      { "max-shrink", required_argument, NULL, 's' },
		{ "force", no_argument, NULL, 'f' },        { "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	char *end;
	int ch;

	*o = (struct sync_opts){ .config = CONFIG_DEFAULT_PATH, .max_shrink = 10.0 };
	optind = 1;
	while ((ch = getopt_long(argc, argv, "c:o:ns:fh", opts, NULL)) != -1) {
		switch (ch) {
		case 'c': o->config = optarg; break;
		case 'o': o->output = optarg; break;
		case 'n': o->dry_run = true; break;
		case 'f': o->force = true; break;
		case 's':
			o->max_shrink = strtod(optarg, &end);
			if (end == optarg || *end != '\0' || !(o->max_shrink >= 0 && o->max_shrink <= 100)) {
				fprintf(stderr, "backstop sync: --max-shrink: a percentage from 0 to 100\n");
				return -1;
			}
			break;
		case 'h': sync_usage(stdout); return 1;
		default: sync_usage(stderr); return -1;
		}
	}
	if (optind + 1 != argc || rcpt_type_find(argv[optind], &o->name) != &rcpt_ldap_type ||
	    o->output == NULL) {
		sync_usage(stderr);
		return -1;
	}
	o->spec = argv[optind];
	return 0;
}

/* ---- the current map ---- */

static int key_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static void map_parse_keys(struct sync_map *m)
{
	size_t cap = 0;

	for (char *line = m->content; line < m->content + m->len;) {
		char *nl = memchr(line, '\n', (size_t)(m->content + m->len - line));
		char *eol = nl ? nl : m->content + m->len;
		size_t klen = strcspn(line, " \t\r\n");
		if (klen > (size_t)(eol - line))
			klen = (size_t)(eol - line);
		if (klen > 0 && line[0] != '#') {
			if (m->n == cap) {
				cap = cap ? cap * 2 : 1024;
				m->keys = xrealloc(m->keys, cap * sizeof(char *));
			}
			m->keys[m->n++] = xstrndup(line, klen);
		}
		line = eol + 1;
	}
	if (m->n > 1)
		qsort(m->keys, m->n, sizeof(char *), key_cmp);
}

static int map_read(const char *path, struct sync_map *m)
{
	FILE *f = fopen(path, "re");
	size_t cap = 65536;

	memset(m, 0, sizeof(*m));
	if (f == NULL) {
		if (errno == ENOENT)
			return 0;
		fprintf(stderr, "backstop sync: %s: %s\n", path, strerror(errno));
		return -1;
	}
	m->exists = true;
	m->content = xmalloc(cap + 1);
	for (size_t got; (got = fread(m->content + m->len, 1, cap - m->len, f)) > 0;) {
		m->len += got;
		if (m->len == cap)
			m->content = xrealloc(m->content, (cap *= 2) + 1);
	}
	m->content[m->len] = '\0';
	if (ferror(f)) {
		fprintf(stderr, "backstop sync: %s: read error\n", path);
		fclose(f);
		return -1;
	}
	fclose(f);
	map_parse_keys(m);
	return 0;
}

static void map_free(struct sync_map *m)
{
	for (size_t i = 0; i < m->n; i++)
		free(m->keys[i]);
	free(m->keys);
	free(m->content);
}

/* ---- the new map ---- */

static char *map_render(const char *spec, const struct ldap_export *ex, size_t *len)
{
	size_t cap = 128;
	char *buf, *p;

	for (size_t i = 0; i < ex->n; i++)
		cap += strlen(ex->addrs[i]) + 4;
	buf = p = xmalloc(cap);
	p += sprintf(p, "# %s, written by backstop sync: do not edit, changes are overwritten\n", spec);
	for (size_t i = 0; i < ex->n; i++)
		p += sprintf(p, "%s OK\n", ex->addrs[i]);
	*len = (size_t)(p - buf);
	return buf;
}

/* Walk both sorted lists: count what is added and removed, printing it when show is set. */
static void map_diff(char *const *old, size_t nold, char *const *cur, size_t ncur, bool show,
		     size_t *added, size_t *removed)
{
	size_t i = 0, j = 0;

	*added = *removed = 0;
	while (i < nold || j < ncur) {
		int c = i == nold ? 1 : j == ncur ? -1 : strcmp(old[i], cur[j]);
		if (c < 0) {
			if (show)
				printf("-%s\n", old[i]);
			(*removed)++;
			i++;
		} else if (c > 0) {
			if (show)
				printf("+%s\n", cur[j]);
			(*added)++;
			j++;
		} else {
			i++;
			j++;
		}
	}
}

static int write_all(int fd, const char *buf, size_t len)
{
	while (len > 0) {
		ssize_t w = write(fd, buf, len);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		buf += w;
		len -= (size_t)w;
	}
	return 0;
}

/* What open(O_CREAT, 0666) would give under the current umask. */
static mode_t new_file_mode(void)
{
	mode_t mask = umask(022);

	umask(mask);
	return 0666 & ~mask;
}

/* Replace path with buf: temp file in the same directory, fsync, rename, fsync the directory.
 * The file keeps its mode (when new: 0666 less the umask). */
static int map_write(const char *path, const char *buf, size_t len)
{
	char *dcopy = xstrdup(path), *bcopy = xstrdup(path);
	const char *dir = dirname(dcopy);
	char tmp[PATH_MAX];
	struct stat st;
	int fd = -1, dfd, ret = -1;

	if ((size_t)snprintf(tmp, sizeof(tmp), "%s/.%s.XXXXXX", dir, basename(bcopy)) < sizeof(tmp))
		fd = mkstemp(tmp);
	else
		errno = ENAMETOOLONG;
	if (fd < 0) {
		fprintf(stderr, "backstop sync: cannot create a file in %s: %s\n", dir, strerror(errno));
		goto out;
	}
	if (fchmod(fd, stat(path, &st) == 0 ? (st.st_mode & 07777) : new_file_mode()) != 0 ||
	    write_all(fd, buf, len) != 0 || fsync(fd) != 0) {
		fprintf(stderr, "backstop sync: %s: %s\n", tmp, strerror(errno));
		close(fd);
		unlink(tmp);
		goto out;
	}
	if (close(fd) != 0 || rename(tmp, path) != 0) {
		fprintf(stderr, "backstop sync: cannot replace %s: %s\n", path, strerror(errno));
		unlink(tmp);
		goto out;
	}
	dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd >= 0) {
		fsync(dfd);
		close(dfd);
	}
	ret = 0;
out:
	free(dcopy);
	free(bcopy);
	return ret;
}

/* ---- the command ---- */

static void sync_progress(void *arg, const struct ldap_export *ex)
{
	printf("\r%s: reading the directory: %zu entries, %u pages", (const char *)arg, ex->entries,
	       ex->pages);
	fflush(stdout);
}

static int sync_export(const struct sync_opts *o, struct ldap_export *ex)
{
	struct config_errors errs = { 0 };
	struct bs_config *cfg = config_load(o->config, &errs);
	const struct bs_ldap *l;
	char err[1024];
	int ret = -1;

	for (size_t i = 0; i < errs.n; i++)
		fprintf(stderr, "%s\n", errs.msgs[i]);
	config_errors_free(&errs);
	if (cfg == NULL)
		return -1;
	l = config_find_ldap(cfg, o->name);
	if (l == NULL) {
		fprintf(stderr, "backstop sync: %s: no [ldap %s] section\n", o->config, o->name);
	} else if (ldap_export_run(cfg, l, ex, isatty(STDOUT_FILENO) ? sync_progress : NULL,
				   (void *)(uintptr_t)o->spec, err, sizeof(err)) != 0) {
		fprintf(stderr, "%sbackstop sync: %s: export failed, %s left as it was: %s\n",
			isatty(STDOUT_FILENO) ? "\n" : "", o->spec, o->output, err);
	} else {
		ret = 0;
	}
	if (isatty(STDOUT_FILENO))
		printf("\r\033[K");
	config_unref(cfg);
	return ret;
}

/* Refuse an export that would empty the map or shrink it beyond --max-shrink. */
static bool sync_guard(const struct sync_opts *o, const struct ldap_export *ex, size_t nold,
		       size_t removed)
{
	double pct = nold ? 100.0 * (double)removed / (double)nold : 0.0;

	if (ex->n == 0) {
		fprintf(stderr, "backstop sync: %s: the directory gave no address in the configured "
				"domains; refusing to empty %s\n", o->spec, o->output);
		return false;
	}
	if (pct > o->max_shrink && !o->force) {
		fprintf(stderr, "backstop sync: %s: %zu of the %zu addresses in %s would go (%.1f%%, more "
				"than --max-shrink %g%%); refusing without --force\n",
			o->spec, removed, nold, o->output, pct, o->max_shrink);
		return false;
	}
	return true;
}

static int sync_apply(const struct sync_opts *o, const struct ldap_export *ex, const struct sync_map *m)
{
	size_t len, added, removed;
	char *buf = map_render(o->spec, ex, &len);
	bool same = m->exists && m->len == len && memcmp(m->content, buf, len) == 0;
	int ret = LDAP_SYNC_ERROR;

	map_diff(m->keys, m->n, ex->addrs, ex->n, o->dry_run, &added, &removed);
	printf("%s: %zu entries read in %u pages (%zu disabled skipped, %zu addresses outside the "
	       "configured domains, %zu malformed)\n",
	       o->spec, ex->entries, ex->pages, ex->disabled, ex->foreign, ex->malformed);
	for (size_t i = 0; i < ex->nskipped; i++)
		fprintf(stderr, "backstop sync: %s: skipped %s\n", o->spec, ex->skipped[i]);
	if (ex->unmappable > ex->nskipped)
		fprintf(stderr, "backstop sync: %s: ... and %zu more skipped\n", o->spec, ex->unmappable - ex->nskipped);
	if (same) {
		printf("%s: unchanged (%zu addresses), left untouched\n", o->output, ex->n);
		ret = LDAP_SYNC_UNCHANGED;
	} else if (sync_guard(o, ex, m->n, removed)) {
		if (o->dry_run) {
			printf("%s: would write %zu addresses: %zu added, %zu removed (dry run: not written)\n",
			       o->output, ex->n, added, removed);
			ret = LDAP_SYNC_CHANGED;
		} else if (map_write(o->output, buf, len) == 0) {
			printf("%s: %zu addresses written: %zu added, %zu removed\n", o->output, ex->n, added,
			       removed);
			ret = LDAP_SYNC_CHANGED;
		}
	}
	free(buf);
	return ret;
}

int ldap_sync_main(int argc, char **argv)
{
	struct sync_opts o;
	struct ldap_export ex;
	struct sync_map m;
	int ret, rc = sync_parse(argc, argv, &o);

	if (rc != 0)
		return rc > 0 ? LDAP_SYNC_CHANGED : LDAP_SYNC_ERROR;
	memset(&ex, 0, sizeof(ex));
	if (map_read(o.output, &m) != 0)
		return LDAP_SYNC_ERROR;
	if (sync_export(&o, &ex) != 0) {
		ldap_export_free(&ex);
		map_free(&m);
		return LDAP_SYNC_ERROR;
	}
	ret = sync_apply(&o, &ex, &m);
	ldap_export_free(&ex);
	map_free(&m);
	return ret;
}
