/* config_value.c - parsers for typed configuration values (see config_value.h). */
#include <stdlib.h>

#include "config_value.h"

void cfgval_hostport_list_free(struct bs_hostport_list *list)
{
	free(list->items);
	list->items = NULL;
	list->n = 0;
}
