/* server.c - placeholder until its owner fills it in. */
typedef int server_placeholder_t;
