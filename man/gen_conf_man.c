/* gen_conf_man.c - build-time generator of backstop.conf(5): copies the template and replaces
 * the line "@OPTIONS@" with the option list that config_describe() writes from the key table.
 * Usage: gen_conf_man TEMPLATE OUTPUT */
#include <stdio.h>
#include <string.h>

#include "config.h"

int main(int argc, char **argv)
{
	char line[4096];
	FILE *in, *out;
	int replaced = 0;

	if (argc != 3) {
		fprintf(stderr, "usage: %s TEMPLATE OUTPUT\n", argv[0]);
		return 2;
	}
	if (!(in = fopen(argv[1], "r")) || !(out = fopen(argv[2], "w"))) {
		perror(in ? argv[2] : argv[1]);
		return 1;
	}
	while (fgets(line, sizeof(line), in)) {
		if (strcmp(line, "@OPTIONS@\n") == 0) {
			config_describe(out, CONFIG_DOC_MDOC);
			replaced++;
		} else {
			fputs(line, out);
		}
	}
	if (ferror(in) || fclose(out) != 0 || replaced != 1) {
		fprintf(stderr, "%s: failed (or no single @OPTIONS@ line)\n", argv[0]);
		return 1;
	}
	fclose(in);
	return 0;
}
