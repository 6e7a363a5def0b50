#!/usr/bin/env python3
"""Puts `if synscope_lab::skip_unless_root("NAME") { return; }` at the top of
every #[test] in the lab test files that lacks it (idempotent). Tests that need
no root (cli_errors, man_page) are left alone."""
import re, sys, pathlib
NO_ROOT = {"cli_errors.rs", "man_page.rs", "root_guard.rs"}
root = pathlib.Path(__file__).resolve().parent.parent / "tests"
pat = re.compile(r'(#\[test\]\n(?:#\[[^\n]*\]\n)*(?:async )?fn ([a-z_0-9]+)\(\) \{\n)(?!    if synscope_lab::skip_unless_root)')
changed = 0
for f in sorted(root.glob("*.rs")):
    if f.name in NO_ROOT:
        continue
    s = f.read_text()
    n = pat.sub(lambda m: m.group(1) + f'    if synscope_lab::skip_unless_root("{m.group(2)}") {{\n        return;\n    }}\n', s)
    if n != s:
        f.write_text(n)
        changed += 1
print(f"{changed} files changed", file=sys.stderr)
