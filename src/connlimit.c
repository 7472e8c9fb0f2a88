/* connlimit.c - placeholder until its owner fills it in. */
typedef int connlimit_placeholder_t;
