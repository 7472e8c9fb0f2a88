/* dnsbl_cli.h - `backstop blcheck [-c FILE] [IP ...]`: are the site's own addresses on DNS
 * blocklists? Exit 0 listed nowhere, 1 listed somewhere, 2 lookups failed (and listed nowhere),
 * 3 usage or configuration error. */
#ifndef BACKSTOP_DNSBL_CLI_H
#define BACKSTOP_DNSBL_CLI_H

/* The lists asked when blcheck_sites is not set (dnsbl_sites syntax). */
extern const char dnsbl_cli_default_sites[];

/* argv[0] is "blcheck". */
int dnsbl_cli_main(int argc, char **argv);

#endif
