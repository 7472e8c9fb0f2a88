#!/usr/bin/python3
"""Print the path of every fuzz target executable in a Meson build dir (tests/fuzz/*.c sources).
Used by `make fuzz`; prints nothing when the build defines none."""
import json
import subprocess
import sys

build = sys.argv[1]
out = subprocess.run(["meson", "introspect", build, "--targets"], check=True,
                     capture_output=True, text=True).stdout
for t in json.loads(out):
    if t["type"] != "executable":
        continue
    sources = [s for grp in t.get("target_sources", []) for s in grp.get("sources", [])]
    if any("/tests/fuzz/" in s for s in sources):
        for f in t["filename"]:
            print(f)
