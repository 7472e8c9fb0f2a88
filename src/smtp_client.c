/* smtp_client.c - placeholder until its owner fills it in. */
typedef int smtp_client_placeholder_t;
