#!/usr/bin/env python3
"""Checks the shape of the house (docs/ARCHITECTURE.md), so it cannot regress.

Over the sources in src/ (test code left aside: `#[cfg(test)]` items and the
files they declare), it fails when

- two top-level modules of the library reach each other, directly or round
  a longer loop (a reference is `use crate::x...`, `crate::x::...` or `super::...` that
  climbs to the crate root, or in lib.rs a module's bare name; `crate::Name`
  re-exported by lib.rs counts as the module it comes from);
- a source file has more than 600 lines, test code not counted;
- a file of more than 400 lines does not open with a `//!` line saying why
  it is one idea.

Run by scripts/test.sh; `--graph` prints the module graph it read, `--sizes`
the files over 400 lines with their first line.
"""

import re
import sys
from pathlib import Path

MAX_LINES = 600
EXPLAIN_OVER = 400

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src"


def strip_comments_and_strings(text):
    """The text with comments, strings and chars blanked out (newlines kept)."""
    out = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            i = j
        elif text.startswith("/*", i):
            depth, j = 1, i + 2
            while j < n and depth:
                if text.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif text.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            out.append("\n" * text.count("\n", i, j))
            i = j
        elif re.match(r'(b?r#*")', text[i:i + 10]) and (i == 0 or not (text[i - 1].isalnum() or text[i - 1] == "_")):
            m = re.match(r'b?r(#*)"', text[i:])
            end = '"' + m.group(1)
            j = text.find(end, i + m.end())
            j = n if j < 0 else j + len(end)
            out.append("\n" * text.count("\n", i, j))
            i = j
        elif c == '"' or (c == "b" and text.startswith('b"', i) and (i == 0 or not text[i - 1].isalnum())):
            j = i + (2 if c == "b" else 1)
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            out.append('""' + "\n" * text.count("\n", i, j))
            i = j + 1
        elif c == "'":
            # A char literal ('a', '\n', '\u{..}'), not a lifetime ('a).
            m = re.match(r"'(\\u\{[0-9a-fA-F]+\}|\\.|[^\\'])'", text[i:])
            if m:
                out.append("' '")
                i += m.end()
            else:
                out.append(c)
                i += 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


def matching_brace(text, open_at):
    depth = 0
    for j in range(open_at, len(text)):
        if text[j] == "{":
            depth += 1
        elif text[j] == "}":
            depth -= 1
            if depth == 0:
                return j
    return len(text) - 1


CFG_TEST = re.compile(r"#\[cfg\(test\)\]\s*(?:#\[[^\]]*\]\s*)*(?:pub(?:\([^)]*\))?\s+)?")


def test_code(code):
    """Spans of `#[cfg(test)]` items, and the names of test modules declared
    as files (`#[cfg(test)] mod tests;`)."""
    spans, test_files = [], []
    for m in CFG_TEST.finditer(code):
        rest = code[m.end():]
        decl = re.match(r"mod\s+(\w+)\s*;", rest)
        if decl:
            test_files.append(decl.group(1))
            spans.append((m.start(), m.end() + decl.end()))
            continue
        brace = code.find("{", m.end())
        semi = code.find(";", m.end())
        if semi >= 0 and (brace < 0 or semi < brace):
            spans.append((m.start(), semi + 1))
        elif brace >= 0:
            spans.append((m.start(), matching_brace(code, brace) + 1))
    return spans, test_files


def blank(code, spans):
    chars = list(code)
    for start, end in spans:
        for k in range(start, min(end, len(chars))):
            if chars[k] != "\n":
                chars[k] = " "
    return "".join(chars)


def top_module(path):
    rel = path.relative_to(SRC)
    return rel.parts[0].removesuffix(".rs")


def module_path(path):
    """`src/cache/entry.rs` -> ["cache", "entry"]; lib.rs -> []."""
    rel = path.relative_to(SRC).with_suffix("")
    parts = list(rel.parts)
    return [] if parts == ["lib"] else parts


def child_file(path, name):
    base = SRC if path.name == "lib.rs" else path.with_suffix("")
    for candidate in (base / f"{name}.rs", base / name / "mod.rs"):
        if candidate.exists():
            return candidate
    return None


def squeeze(tree):
    """A use tree on one line, spaces kept only around `as`."""
    tree = re.sub(r"\s+", " ", tree).strip()
    return re.sub(r"\s*([{},]|::)\s*", r"\1", tree)


def use_paths(tree, prefix=""):
    """Expands a use tree (`crate::{a::b, c::{d, e}}`) into whole paths."""
    tree = tree.strip()
    brace = tree.find("{")
    if brace < 0:
        return [prefix + tree]
    head = prefix + tree[:brace]
    inner = tree[brace + 1:tree.rfind("}")]
    parts, depth, start = [], 0, 0
    for k, ch in enumerate(inner):
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(inner[start:k])
            start = k + 1
    parts.append(inner[start:])
    paths = []
    for part in parts:
        if part.strip():
            paths.extend(use_paths(part, head))
    return paths


def references(code):
    """Every path the code names from `crate` or `super`."""
    paths = []
    for m in re.finditer(r"\buse\s+([^;]*);", code):
        paths.extend(use_paths(squeeze(m.group(1))))
    no_use = re.sub(r"\buse\s+[^;]*;", "", code)
    paths.extend(re.findall(r"\b(?:crate|super)(?:::\w+)+", re.sub(r"\s*::\s*", "::", no_use)))
    return [p for p in paths if p.startswith(("crate::", "super::"))]


def lib_reexports(lib_code):
    """Names lib.rs re-exports (`pub use module::{A, B as C}`) -> module."""
    found = {}
    for m in re.finditer(r"\bpub\s+use\s+([^;]*);", lib_code):
        for path in use_paths(squeeze(m.group(1))):
            path, _, alias = path.partition(" as ")
            segments = path.split("::")
            if segments[0] == "crate":
                segments = segments[1:]
            found[alias or segments[-1]] = segments[0]
    return found


def main():
    graph_wanted = "--graph" in sys.argv[1:]
    problems = []
    modules = {p.name.removesuffix(".rs") for p in SRC.iterdir() if p.suffix == ".rs" or p.is_dir()}
    modules -= {"lib", "main"}

    # Walk the module tree from lib.rs, leaving test modules out.
    files, test_only = [], set()
    # main.rs is a crate of its own (the binary): its size counts, its
    # `crate::` paths are not the library's.
    binary = SRC / "main.rs"
    queue = [SRC / "lib.rs", binary]
    codes, spans_of, sizes = {}, {}, []
    while queue:
        path = queue.pop()
        raw = path.read_text()
        code = strip_comments_and_strings(raw)
        spans, test_files = test_code(code)
        for name in test_files:
            child = child_file(path, name)
            if child:
                test_only.add(child)
        spans_of[path] = spans
        code = blank(code, spans)
        codes[path] = (raw, code)
        files.append(path)
        for m in re.finditer(r"\bmod\s+(\w+)\s*;", code):
            child = child_file(path, m.group(1))
            if child and child not in test_only:
                queue.append(child)

    reexports = lib_reexports(codes[SRC / "lib.rs"][1])
    edges = {}
    for path in files:
        raw, code = codes[path]
        here = module_path(path)
        source = top_module(path) if here else "lib"
        refs = [] if path == binary else references(code)
        if not here:
            # In lib.rs the modules are in scope by their bare names.
            names = "|".join(sorted(modules))
            refs += ["crate::" + m for m in re.findall(rf"(?<![\w:])({names})::", code)]
        for ref in refs:
            segments = ref.split("::")
            if segments[0] == "crate":
                target = segments[1:]
            else:
                ups = 0
                while ups < len(segments) and segments[ups] == "super":
                    ups += 1
                # `super` from a file climbs from the module the file is.
                base = here[: len(here) - ups]
                if len(base) > 0:
                    continue  # stays inside its top-level module
                target = segments[ups:]
            if not target:
                continue
            first = target[0]
            if first in modules:
                dest = first
            elif first in reexports:
                dest = reexports[first]
            else:
                dest = "lib"
            if dest != source:
                edges.setdefault(source, {}).setdefault(dest, set()).add(
                    f"{path.relative_to(ROOT)}: {ref}"
                )

        # Sizes, test code not counted.
        test_lines = set()
        for start, end in spans_of[path]:
            first = code.count("\n", 0, start)
            test_lines.update(range(first, first + code.count("\n", start, end) + 1))
        counted = len(raw.rstrip("\n").split("\n")) - len(test_lines)
        rel = path.relative_to(ROOT)
        sizes.append((counted, str(rel), raw.split("\n", 1)[0]))
        if counted > MAX_LINES:
            problems.append(f"{rel}: {counted} lines besides tests (at most {MAX_LINES})")
        elif counted > EXPLAIN_OVER and not raw.startswith("//!"):
            problems.append(
                f"{rel}: {counted} lines besides tests: its first line must be a `//!` "
                f"saying why it is one idea (over {EXPLAIN_OVER})"
            )

    # Cycles between top-level modules (lib.rs wires them all: only an edge
    # into lib can close a loop through it).
    graph = {s: set(d) for s, d in edges.items()}
    for cycle in strongly_connected(graph):
        if len(cycle) < 2:
            continue
        detail = []
        for a in sorted(cycle):
            for b in sorted(graph.get(a, ())):
                if b in cycle:
                    example = sorted(edges[a][b])[0]
                    detail.append(f"    {a} -> {b}  ({example})")
        problems.append(
            "import cycle between " + ", ".join(sorted(cycle)) + " (for one: "
            + " -> ".join(shortest_loop(graph, cycle)) + "):\n" + "\n".join(detail)
        )

    if graph_wanted:
        for a in sorted(graph):
            print(f"{a} -> {', '.join(sorted(graph[a]))}")
    if "--sizes" in sys.argv[1:]:
        for counted, rel, first in sorted(sizes, reverse=True):
            if counted > EXPLAIN_OVER:
                print(f"{counted:5} {rel}: {first}")
    if problems:
        for p in problems:
            print(f"check-layers: {p}", file=sys.stderr)
        sys.exit(1)
    print(f"check-layers: {len(files)} files, no import cycle between top-level modules, none over {MAX_LINES} lines")


def shortest_loop(graph, group):
    """A shortest loop through the first module of `group`, as a path."""
    start = sorted(group)[0]
    paths = {start: [start]}
    queue = [start]
    while queue:
        node = queue.pop(0)
        for nxt in sorted(graph.get(node, ())):
            if nxt == start:
                return paths[node] + [start]
            if nxt in group and nxt not in paths:
                paths[nxt] = paths[node] + [nxt]
                queue.append(nxt)
    return [start]


def strongly_connected(graph):
    """Tarjan's algorithm: the strongly connected sets of `graph`."""
    index, low, on_stack, stack, found = {}, {}, set(), [], []
    counter = [0]
    nodes = set(graph) | {d for ds in graph.values() for d in ds}

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.add(w)
                if w == v:
                    break
            found.append(group)

    sys.setrecursionlimit(10000)
    for v in sorted(nodes):
        if v not in index:
            visit(v)
    return found


if __name__ == "__main__":
    main()
