/* config.c - placeholder until its owner fills it in. */
typedef int config_placeholder_t;
