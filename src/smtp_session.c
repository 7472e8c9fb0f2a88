/* smtp_session.c - placeholder until its owner fills it in. */
typedef int smtp_session_placeholder_t;
