#!/usr/bin/env python3
"""Counts the public items of a crate from its `cargo doc` HTML.

Items with a page of their own (modules, structs, enums, traits, functions,
macros, constants, statics, type aliases), plus the members listed on those
pages: inherent methods and associated items, struct fields, enum variants,
and a trait's own methods. Trait implementations (Debug, Clone, From, ...)
are not counted. Usage: public-items.py target/doc/CRATE
"""
import os, re, sys

root = sys.argv[1]
pages = modules = members = 0
for dirpath, _, files in os.walk(root):
    for f in files:
        if not f.endswith(".html") or f in ("all.html",) or f.startswith("sidebar"):
            continue
        text = open(os.path.join(dirpath, f), encoding="utf-8").read()
        if "Redirecting to" in text and len(text) < 1000:
            continue
        if f == "index.html":
            modules += 1
            continue
        pages += 1
        # Members outside trait implementations.
        cut = len(text)
        for marker in ('id="trait-implementations"', 'id="synthetic-implementations"',
                       'id="blanket-implementations"', 'id="implementors"'):
            i = text.find(marker)
            if i != -1:
                cut = min(cut, i)
        head = text[:cut]
        # Inherent impl blocks are in implementations-list; trait impls on
        # the same page are in their own lists after it.
        members += len(set(re.findall(r'id="((?:method|tymethod|structfield|variant|associatedconstant|associatedtype)\.[^"]+)"', head)))
print(f"{modules} modules, {pages} items with a page, {members} members; total {modules + pages + members}")
