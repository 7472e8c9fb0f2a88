/* verify_cli.h - the `backstop verify` and `backstop cache` subcommands, called from main.c with
 * argv starting at the subcommand's name. Both return the process exit code. */
#ifndef BACKSTOP_VERIFY_CLI_H
#define BACKSTOP_VERIFY_CLI_H

/* backstop verify [-c FILE] [--no-cache] ADDRESS...: 0 all valid, 1 any invalid (or not ours),
 * 2 any unavailable (wins over 1), 3 usage or configuration error. */
int verify_cli_main(int argc, char **argv);

/* backstop cache [-c FILE] stats | show ADDR | purge ADDR|@DOMAIN | flush: 0 done, 1 store
 * error, 3 usage or configuration error. */
int cache_cli_main(int argc, char **argv);

#endif
