#!/usr/bin/env python3
"""Checks that every file in src/ does one job: at most 600 lines of code
before its test module (blank and comment lines left out; tests.rs and
test_support.rs files are tests), and no function outside test code longer
than 80 such lines. Prints each one over and exits 1 if there is any.

    python3 .ci/lengths.py [SRC_DIR]
"""
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from layers import sources  # noqa: E402  (one walk, one test-module cut)

MAX_FILE = 600
MAX_FN = 80


def code_lines(lines):
    return sum(1 for l in lines if l.strip() and not l.strip().startswith("//"))


def main():
    src = sys.argv[1] if len(sys.argv) > 1 else "src"
    over = []
    for path, code in sources(src):
        lines = code.split("\n")
        n = code_lines(lines)
        if n > MAX_FILE:
            over.append("%s: %d lines of code (at most %d)" % (path, n, MAX_FILE))
        i = 0
        while i < len(lines):
            m = re.match(r"^(\s*)(pub(\([^)]*\))?\s+)?(const\s+)?(async\s+)?(unsafe\s+)?fn\s+(\w+)", lines[i])
            if not m:
                i += 1
                continue
            indent, name = len(m.group(1)), m.group(7)
            # The signature ends at the line opening the body (or `;`).
            j = i
            while j < len(lines) and not lines[j].rstrip().endswith(("{", ";")):
                j += 1
            if j >= len(lines) or lines[j].rstrip().endswith(";"):
                i = j + 1
                continue
            # The body ends at the first `}` back at the signature's indent.
            k = j + 1
            while k < len(lines) and not (
                lines[k].startswith(" " * indent + "}")
                and len(lines[k]) - len(lines[k].lstrip()) == indent
            ):
                k += 1
            n = code_lines(lines[i : k + 1])
            if n > MAX_FN:
                over.append("%s: fn %s is %d lines of code (at most %d)" % (path, name, n, MAX_FN))
            i = j + 1
    for o in over:
        print(o)
    if over:
        return 1
    print("lengths: no file in %s over %d lines of code, no function over %d" % (src, MAX_FILE, MAX_FN))
    return 0


if __name__ == "__main__":
    sys.exit(main())
