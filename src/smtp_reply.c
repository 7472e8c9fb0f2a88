/* smtp_reply.c - placeholder until its owner fills it in. */
typedef int smtp_reply_placeholder_t;
