/* control_cli.h - the client side of the control socket: `backstop status`, `backstop reload`,
 * and the request that `backstop cache` sends to the running daemon before it falls back to the
 * store. Called from main.c with argv starting at the subcommand's name. */
#ifndef BACKSTOP_CONTROL_CLI_H
#define BACKSTOP_CONTROL_CLI_H

#include <stddef.h>
#include <stdio.h>

/* The daemon's socket: opt (--socket) if given, else control_socket as written in the config
 * file conf (read without validating the rest: it may have errors), else the key's default. */
void control_cli_socket(const char *conf, const char *opt, char *path, size_t pathsz);

/* Send one request line to the daemon at path and wait up to timeout_s for its answer, written
 * (lines unstuffed) to out when the status is 0, else to err. Returns the status of the ". N"
 * line, or -1 with why filled when the daemon cannot be reached. */
int control_cli_request(const char *path, const char *request, int timeout_s, FILE *out, FILE *err, char *why,
			size_t whysz);

/* backstop status [-c FILE] [-s PATH]: 0 done, 2 usage, 4 the daemon cannot be reached. */
int status_cli_main(int argc, char **argv);
/* backstop reload [-c FILE] [-s PATH]: 0 applied, 1 refused (the running configuration kept),
 * 2 usage, 4 the daemon cannot be reached. */
int reload_cli_main(int argc, char **argv);

#endif
