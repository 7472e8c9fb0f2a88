/* config_value.c - placeholder until its owner fills it in. */
typedef int config_value_placeholder_t;
