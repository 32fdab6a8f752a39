#!/usr/bin/env python3
"""Checks that every `crate::` import in src/ points to the same layer or a
lower one (the layers are listed in lib.rs, "# Layout"). Test code (after a
file's `#[cfg(test)] mod`, and tests.rs / test_support.rs files) is left
out. Prints each upward import and exits 1 if there is any.

    python3 .ci/layers.py [SRC_DIR]
"""
import os
import re
import sys

# Module path prefix -> layer. The longest matching prefix wins.
LAYERS = {
    # 1. plain data
    "error": 1, "request": 1, "response": 1, "item": 1, "context": 1,
    "stats": 1, "state": 1, "events": 1, "host": 1, "redact": 1, "logging": 1,
    # 2. policies and back-ends, no actor addresses
    "spider": 2, "fingerprint": 2, "retry": 2, "backoff": 2, "redirect": 2,
    "politeness": 2, "admission": 2, "queue": 2, "dedupe": 2, "links": 2,
    "http": 2, "middleware": 2, "pipeline": 2, "pipelines": 2,
    "journal": 2, "jobdir": 2, "json_sender": 2, "distributed": 2,
    "limits": 2, "sitemap": 2, "recrawl": 2, "httpcache": 2,
    # 3. the protocol
    "messages": 3, "accounting": 3,
    # 4. the actors
    "actors": 4,
    # 5. assembly and API
    "builder": 5, "launch": 5, "arbiter": 5, "handle": 5, "control": 5, "cli": 5, "registry": 5, "settings": 5, "assertions": 5, "": 5,
}


def module_of(rel):
    parts = rel[:-3].split("/")
    if parts[-1] in ("mod", "lib"):
        parts = parts[:-1]
    return parts


def layer_of(parts):
    for n in range(len(parts), -1, -1):
        key = "/".join(parts[:n])
        if key in LAYERS:
            return LAYERS[key]
    raise SystemExit("no layer for module %s: add it to LAYERS" % "::".join(parts))


def code_part(text):
    cut = re.search(r"^#\[cfg\(test\)\]\s*\n\s*(pub(\(crate\))?\s+)?mod\s+\w+", text, re.M)
    return text[: cut.start()] if cut else text


def sources(src):
    """(path, code) of every Rust file under `src` but the test files, the
    code cut before the file's test module. Shared with `lengths.py`."""
    for dp, _, fs in sorted(os.walk(src)):
        for f in sorted(fs):
            if f.endswith(".rs") and f not in ("tests.rs", "test_support.rs"):
                path = os.path.join(dp, f)
                yield path, code_part(open(path, encoding="utf-8").read())


def main():
    src = sys.argv[1] if len(sys.argv) > 1 else "src"
    bad = []
    for path, code in sources(src):
        rel = os.path.relpath(path, src)
        here = layer_of(module_of(rel))
        # `use crate::{a::X, b::Y}` groups and plain `crate::a::b` paths.
        targets = set()
        for m in re.finditer(r"use crate::\{([^;]*)\};", code, re.S):
            depth, word = 0, ""
            for tok in re.findall(r"\w+|[{},]|::", m.group(1)):
                if tok == "{":
                    depth += 1
                elif tok == "}":
                    depth -= 1
                elif re.match(r"\w+", tok) and depth == 0 and not word:
                    word = tok
                    targets.add(word)
                elif tok == "," and depth == 0:
                    word = ""
        for m in re.finditer(r"crate::(\w+)(?:::(\w+))?", code):
            targets.add(m.group(1) + ("/" + m.group(2) if m.group(2) else ""))
        for t in sorted(targets):
            parts = t.split("/")
            if parts[0] not in {k.split("/")[0] for k in LAYERS if k}:
                continue  # a root re-export such as crate::Request
            there = layer_of(parts)
            if there > here:
                bad.append("%s (layer %d) imports crate::%s (layer %d)"
                           % (rel, here, "::".join(parts), there))
    for b in bad:
        print(b)
    if bad:
        return 1
    print("layers: every import in %s points to its own layer or a lower one" % src)
    return 0


if __name__ == "__main__":
    sys.exit(main())
