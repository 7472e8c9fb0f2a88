/* smtp_parse.c - placeholder until its owner fills it in. */
typedef int smtp_parse_placeholder_t;
