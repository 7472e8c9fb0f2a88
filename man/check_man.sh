#!/bin/sh
# check_man.sh GROFF PAGE - render PAGE with groff's mdoc macros, all warnings on; fail on any.
out=$("$1" -mandoc -Tutf8 -ww -z "$2" 2>&1)
[ -z "$out" ] || { printf '%s\n' "$out"; exit 1; }
