/* smtp_data.c - placeholder until its owner fills it in. */
typedef int smtp_data_placeholder_t;
