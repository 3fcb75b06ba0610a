#!/usr/bin/env python3
"""Checks that every #include in src/, include/ and apps/ points down (or sideways within a
layer) in Orchard's layer order (docs/architecture.md, "Layers").

    python3 scripts/check_layers.py          # exit 0: no violation; 1: violations, listed
    python3 scripts/check_layers.py --list   # prints the layers and each public header's layer

A layer may include its own files and those of any layer beneath it. Layers on one level are
peers: they may include the levels beneath them but not each other. A SEALED header, and every
header that includes it, directly or not, may be included only up to a given level: the layers
above reach what it holds through the public API. A folder of src/ or a header
of include/orchard/ that is not listed below is an error too, so that a new one gets its place
decided rather than slipping through. tests/, fuzz/, bench/ and examples/ may include anything and
are not scanned. Python 3 standard library only: CI runs it before building (ctest layer_check).
"""
import os
import re
import sys

# Bottom to top. Each entry is one level: a layer, or peers that must not include each other.
# The folder of a layer is src/<name>/, except apps (apps/) and umbrella (only include/orchard/orchard.h).
LEVELS = [
    ["base"],        # errors, files, JSON bounds, f16: needs nothing of Orchard
    ["tensor"],      # element types, tensor views, dequantization
    ["kernels"],     # the kernel table, ISA paths, packing, thread pool
    ["formats"],     # GGUF, safetensors readers and the GGUF writer
    ["tokenizer"],   # needs formats (GGUF vocabularies), nothing of the model
    ["template"],    # the Jinja interpreter: needs base only
    ["model"],       # loaders, weights, the forward pass, the WeightSource interface
    ["flash"],       # limited-memory mode: a WeightSource; Model::load
    ["runtime"],     # the Engine, sampling, constraints, sessions, chat prompts
    ["quant", "eval", "train"],  # tools over the engine and the model, independent of each other
    ["capi"],        # the C API (orchard_c.h) over the engine, tokenizer and templates
    ["server", "distill"],  # the OpenAI protocol handler and its HTTP transport; distillation (a teacher's
                            # answers over HTTP, then the student's training): peers, both on cpp-httplib
    ["cloud"],       # the private cloud node (reuses the server's handler)
    ["router"],      # uses the engine and the cloud client
    ["umbrella"],    # orchard.h, the whole C++ API in one include (for programs outside Orchard)
    ["apps"],        # the CLI
]

# Public headers belong to the layer that implements them.
PUBLIC_HEADERS = {
    "error.h": "base",
    "types.h": "base",  # enums the kernels need beneath model.h
    "model.h": "model",
    "adapter.h": "model",
    "tokenizer.h": "tokenizer",
    "chat_template.h": "template",
    "engine.h": "runtime",
    "orchard_c.h": "capi",
    "orchard.h": "umbrella",
}

# Headers that only the layers up to the given one may include, directly or through another
# header. Model::Impl (the loaded weights, and the Transformer and weight sources built on it)
# serves the engine and the tools that read weights, never the C API, the server or the apps:
# those go through include/orchard/ (Model, Engine).
SEALED = {
    "src/model/model_impl.h": "quant",  # up to the level of quant, eval, train
}

# TEMPORARY: violations in files being rewritten right now (issue 14: the Engine replaces the
# server's Scheduler and runtime's generate()/Session). Each entry is (including file, included
# path as written). Empty this list as those rewrites land; never add to it. An entry that no
# longer matches is reported as a note, not a failure.
TEMPORARY_ALLOWLIST = [
]

INCLUDE = re.compile(r'^\s*#\s*include\s*(?:"([^"]+)"|<(orchard/[^>]+)>)')


def level_of():
    levels = {}
    for i, peers in enumerate(LEVELS):
        for name in peers:
            levels[name] = i
    return levels


def layer_of_file(path):
    """The layer of a file of the tree (path relative to the root), or None if unscanned."""
    parts = path.split("/")
    if parts[0] == "src" and len(parts) > 2:
        return parts[1]
    if parts[0] == "include" and len(parts) == 3 and parts[1] == "orchard":
        return PUBLIC_HEADERS.get(parts[2], "?include/orchard/" + parts[2])
    if parts[0] == "apps":
        return "apps"
    return None


def resolve(root, including, written):
    """The tree path an include names, or None (a third-party header written with quotes)."""
    first = written.split("/")[0]
    if first == "orchard":
        return "include/" + written
    if first not in (".", "..") and "/" in written and os.path.isdir(os.path.join(root, "src", first)):
        return os.path.normpath("src/" + written)
    local = os.path.normpath(os.path.join(os.path.dirname(including), written))
    if os.path.exists(os.path.join(root, local)):
        return local
    return None


def scan(root):
    for top in ("src", "include", "apps"):
        for folder, dirs, files in os.walk(os.path.join(root, top)):
            dirs.sort()
            for name in sorted(files):
                if name.endswith((".h", ".hpp", ".cpp", ".cc", ".c", ".inc")):
                    yield os.path.relpath(os.path.join(folder, name), root)


def read_includes(root, path):
    """(line number, include as written, tree path it names) for each resolvable include."""
    found = []
    with open(os.path.join(root, path), encoding="utf-8", errors="replace") as f:
        for number, line in enumerate(f, 1):
            m = INCLUDE.match(line)
            if m:
                written = m.group(1) or m.group(2)
                target_path = resolve(root, path, written)
                if target_path is not None:
                    found.append((number, written, target_path))
    return found


def sealed_reach(includes):
    """For each file, the sealed headers it reaches (itself included), through any chain."""
    reach = {}

    def visit(path, stack):
        if path in reach:
            return reach[path]
        if path in stack:  # a cycle of includes (#pragma once): nothing more through it
            return set()
        stack.add(path)
        got = {path} if path in SEALED else set()
        for _, _, target in includes.get(path, []):
            got |= visit(target, stack)
        stack.discard(path)
        reach[path] = got
        return got

    for path in includes:
        visit(path, set())
    return reach


def check(root):
    levels = level_of()
    allowed = set(TEMPORARY_ALLOWLIST)
    used_allowances = set()
    problems = []
    includes = {path: read_includes(root, path) for path in scan(root)}
    reach = sealed_reach(includes)

    for name in sorted(os.listdir(os.path.join(root, "src"))):
        if os.path.isdir(os.path.join(root, "src", name)) and name not in levels:
            problems.append(f"src/{name}/: a folder with no layer; give it one in scripts/check_layers.py "
                            "and docs/architecture.md")
    public = os.path.join(root, "include", "orchard")
    for name in sorted(os.listdir(public)):
        if name not in PUBLIC_HEADERS:
            problems.append(f"include/orchard/{name}: a public header with no layer; add it to PUBLIC_HEADERS")

    for path, found in includes.items():
        source = layer_of_file(path)
        if source not in levels:
            continue  # reported above (an unlisted folder or header)
        for number, written, target_path in found:
            target = layer_of_file(target_path)
            if target is None:
                continue
            if target not in levels:
                problems.append(f"{path}:{number}: includes {written}, which has no layer")
                continue
            problem = None
            if source != target and levels[target] >= levels[source]:
                how = "a peer" if levels[target] == levels[source] else "a higher layer"
                problem = (f"layer {source} includes {written} of layer {target} "
                           f"({how}; order: docs/architecture.md, \"Layers\")")
            else:
                for sealed in sorted(reach.get(target_path, ())):
                    if levels[source] > levels[SEALED[sealed]]:
                        limit = "/".join(LEVELS[levels[SEALED[sealed]]])
                        via = "" if sealed == target_path else f" (through it, {sealed})"
                        problem = (f"layer {source} includes {written}{via}, which only the layers up to "
                                   f"{limit} may: use the public API (include/orchard/)")
                        break
            if problem is None:
                continue
            if (path, written) in allowed:
                used_allowances.add((path, written))
                continue
            problems.append(f"{path}:{number}: {problem}")

    notes = [f"note: TEMPORARY_ALLOWLIST: {path} no longer includes {written}; remove the entry"
             for path, written in sorted(allowed - used_allowances)]
    return problems, notes


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    if "--list" in sys.argv[1:]:
        for i, peers in enumerate(LEVELS):
            print(f"{i:2d}  {', '.join(peers)}")
        for header, layer in sorted(PUBLIC_HEADERS.items()):
            print(f"include/orchard/{header}: {layer}")
        return 0
    problems, notes = check(root)
    for line in notes + problems:
        print(line)
    if problems:
        print(f"check_layers: {len(problems)} problem(s)")
        return 1
    print("check_layers: every include points down the layers")
    return 0


if __name__ == "__main__":
    sys.exit(main())
