/* tls.c - placeholder until its owner fills it in. */
typedef int tls_placeholder_t;
