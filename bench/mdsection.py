#!/usr/bin/env python3
"""Replace one section of a Markdown results file, keeping the others.

usage: mdsection.py FILE NAME CONTENT-FILE

A section is everything between the lines `<!-- bench:NAME -->` and
`<!-- /bench:NAME -->`.  If FILE has no such section, it is appended (or FILE
is created).  run.sh writes the section "tcp", run-http.sh the section
"http", so each run leaves the other's table in bench/results.md.
"""
import os
import sys


def main():
    if len(sys.argv) != 4:
        print(__doc__, file=sys.stderr)
        return 2
    path, name, content_path = sys.argv[1:]
    begin, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
    content = open(content_path).read().rstrip("\n")
    block = f"{begin}\n{content}\n{end}"
    try:
        old = open(path).read()
    except FileNotFoundError:
        old = ""
    lines = old.split("\n")
    if begin in lines and end in lines and lines.index(begin) < lines.index(end):
        i, j = lines.index(begin), lines.index(end)
        new = "\n".join(lines[:i] + [block] + lines[j + 1:])
    else:
        new = (old.rstrip("\n") + "\n\n" if old.strip() else "") + block + "\n"
    tmp = f"{path}.tmp.{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(new if new.endswith("\n") else new + "\n")
    os.replace(tmp, path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
