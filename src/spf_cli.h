/* spf_cli.h - `backstop spf [-c FILE] IP SENDER [HELO]`: one SPF evaluation, for an admin
 * asking why a sender was refused, and for scripts (bench/, the RFC suite over real DNS). */
#ifndef BACKSTOP_SPF_CLI_H
#define BACKSTOP_SPF_CLI_H

/* argv[0] is "spf". Exit 0 whatever the result, 1 for an error in the command. */
int spf_cli_main(int argc, char **argv);

#endif
