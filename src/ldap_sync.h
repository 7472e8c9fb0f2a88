/* ldap_sync.h - `backstop sync -c FILE ldap:NAME --output PATH [--dry-run] [--max-shrink PCT]
 * [--force]`: export a directory's recipient addresses into a map: file (Postfix
 * relay_recipients format), replacing it atomically, refusing to shrink it by more than PCT %
 * (default 10) without --force, and never replacing it with an empty or failed export.
 * Exit status: 0 the map changed (or would, with --dry-run), 3 unchanged, 1 error. */
#ifndef BACKSTOP_LDAP_SYNC_H
#define BACKSTOP_LDAP_SYNC_H

#define LDAP_SYNC_CHANGED 0
#define LDAP_SYNC_ERROR 1
#define LDAP_SYNC_UNCHANGED 3

/* argv[0] is the subcommand's name ("sync"); options follow. Blocking; runs no event loop. */
int ldap_sync_main(int argc, char **argv);

#endif
