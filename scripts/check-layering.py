#!/usr/bin/env python3
"""The module rules of docs/DESIGN.md, checked from the sources and Package.swift:

1. No library target prints: `print(` and writes to stdout/stderr (FileHandle.standardOutput,
   FileHandle.standardError, fputs, FileHandle(fileDescriptor: 1/2)) appear only in the CLI
   (Sources/ntkgram) and the benchmark (Sources/NTKGramBench). Libraries report to an EventSink.
2. Every `import X` of a target names a module the target declares in Package.swift (a target
   of this package, one of its products' modules, or a system module).
3. GramSolver does not depend on GramKernels (nor on anything above it).

Usage: python3 scripts/check-layering.py   (run by scripts/test.sh; exit 1 on any violation)
"""
import json
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PRINTING_TARGETS = {"ntkgram", "NTKGramBench"}
SYSTEM = {"Foundation", "Glibc", "Darwin", "Dispatch", "Testing", "XCTest", "FoundationEssentials", "Synchronization", "_Concurrency"}
PRINT = re.compile(r"\bprint\(|FileHandle\.standard(Output|Error)|\bfputs\(|fileDescriptor:\s*[12]\b|\bputs\(")
IMPORT = re.compile(r"^\s*(?:@\w+(?:\([^)]*\))?\s+)*import\s+(?:(?:struct|class|enum|func|var|let|protocol|typealias)\s+)?([A-Za-z_][A-Za-z0-9_]*)", re.M)
FORBIDDEN = {"GramSolver": {"GramKernels", "GramBuild", "GramData", "GramStorage", "GramAnalysis", "GramJobs", "GramNetwork"}}


def strip_comments(text):
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    return re.sub(r"//[^\n]*", "", text)


def main():
    dump = json.loads(subprocess.run(["swift", "package", "dump-package"], cwd=ROOT, capture_output=True, text=True, check=True).stdout)
    product_modules = {}  # product name → modules (a product of a dependency is named like its module here)
    problems = []
    for target in dump["targets"]:
        name, kind = target["name"], target["type"]
        if kind == "system":
            continue
        declared = set()
        for dep in target.get("dependencies", []):
            for key in ("byName", "target", "product"):
                if key in dep:
                    declared.add(dep[key][0])
        base = target.get("path") or os.path.join("Tests" if kind == "test" else "Sources", name)
        folder = os.path.join(ROOT, base)
        for dirpath, _, files in os.walk(folder):
            for f in files:
                if not f.endswith(".swift"):
                    continue
                path = os.path.join(dirpath, f)
                rel = os.path.relpath(path, ROOT)
                text = strip_comments(open(path, encoding="utf-8").read())
                for module in IMPORT.findall(text):
                    if module in SYSTEM or module == name:
                        continue
                    if module not in declared:
                        problems.append(f"{rel}: imports {module}, which target {name} does not declare in Package.swift")
                if kind == "regular" and name not in PRINTING_TARGETS:
                    for lineno, line in enumerate(text.splitlines(), 1):
                        if PRINT.search(line):
                            problems.append(f"{rel}:{lineno}: library target {name} writes to the terminal: {line.strip()}")
        for bad in FORBIDDEN.get(name, set()) & declared:
            problems.append(f"Package.swift: {name} depends on {bad}")
    for p in problems:
        print("check-layering: " + p, file=sys.stderr)
    if problems:
        return 1
    print("check-layering: no library target prints; every import is declared; GramSolver stands apart from the kernels")
    return 0


if __name__ == "__main__":
    sys.exit(main())
