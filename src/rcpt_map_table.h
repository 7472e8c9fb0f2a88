/* rcpt_map_table.h - the data of a map: source, parsed from a Postfix relay_recipients file
 * into one immutable hash table (open addressing over one key arena: no per-entry malloc).
 * A table is built once, then only read, by any number of threads. Pure: no I/O. */
#ifndef BACKSTOP_RCPT_MAP_TABLE_H
#define BACKSTOP_RCPT_MAP_TABLE_H

#include <stdbool.h>
#include <stddef.h>

struct map_table;

/* Parse a whole file's bytes. name is used in messages only. On a bad line (among them a local
 * part that unquotes to nothing, ""@domain: never a catch-all) returns NULL with
 * "NAME:LINE: what is wrong" in why (the first bad line; the whole file is refused so that a
 * half-broken file never replaces a good one). */
struct map_table *map_table_parse(const char *name, const char *buf, size_t len, char *why, size_t whysz);
void map_table_free(struct map_table *t);
size_t map_table_entries(const struct map_table *t);

/* Is key ("local@domain", domain lower case; "@domain" for the catch-all) in the table? The
 * domain part always compares exactly, the local part byte for byte when case_sensitive, else
 * ASCII case-insensitively. */
bool map_table_has(const struct map_table *t, const char *key, bool case_sensitive);

/* Would key (len octets, as it would be written at the start of a map line) be read back as
 * exactly one address with a non-empty local part? NULL if so, else what is wrong ("@domain"
 * and ""@domain are refused: a catch-all is never written by a program). For `backstop sync`. */
const char *map_table_key_check(const char *key, size_t len);

#endif
