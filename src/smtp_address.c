/* smtp_address.c - placeholder until its owner fills it in. */
typedef int smtp_address_placeholder_t;
