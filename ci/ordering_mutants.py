#!/usr/bin/env python3
"""Ordering mutants over every file of ring/src (called by ci/ordering-mutants).

Each mutant weakens ONE memory ordering of the shipped code:

- `Ordering::Acquire|Release|AcqRel|SeqCst` becomes `Ordering::Relaxed`;
- a fence call, `fence(Ordering::X)` / `compiler_fence(Ordering::X)` under any
  path (`core::sync::atomic::fence`, `std::sync::atomic::fence`, ...), is
  removed (a `Relaxed` fence would only panic at run time);
- a call of the `Shared` trait's fence helper, `<receiver>.fence_seq_cst()`,
  is removed.

Code that is not compiled on this target is not mutated, and the report says
so: items under a `#[cfg(...)]` that is false for `rustc --print cfg` plus the
default features of `ring/Cargo.toml` (the build the tests use), and test code
(`#[cfg(test)]` items such as `mod tests`). An ordering spelled in a form this
script does not recognise (a bare `Acquire` after `use Ordering::*`, a fence
with a computed ordering) fails the gate before anything runs, so that no
ordering escapes the check silently.

Each mutant is built and tested in a scratch copy of the workspace (the
working tree is never modified) with the tests that can see it (TESTS below);
it is caught when they fail (or time out). Any survivor fails the gate.

Environment:
  MUTANT_FILES    regex on the file path (e.g. 'sync|wait'); default: all
  MUTANT_FILTER   regex on 'file:line' (e.g. 'spsc/producer.rs:(180|193)'); a bare
                  line number matches that line in any file
  MUTANT_TIMEOUT  seconds per mutant (default 300; a timeout counts as caught)
  MUTANT_LIST=1   list the mutants and skipped sites, run nothing
"""

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SRC = "ring/src"
STRONG = ("Acquire", "Release", "AcqRel", "SeqCst")

# Which tests can kill a mutant of each file. The models (loom sees every
# allowed reordering of the protocol; shuttle is SeqCst and only checks that a
# mutant does not break an interleaving) always run. `ringproof`'s own unit
# and integration tests run too for every file but the protocol: they run the
# shipped backend (`MemShared`: core atomics, real fences and futexes, shm
# segments), which the models replace with their own. Doctests are left out:
# they test no ordering.
MODELS = ["-p", "ringproof-models"]
RING = ["-p", "ringproof", "--lib", "--tests"]
TESTS = {
    "ring/src/spsc/": MODELS,  # the protocol: what the models run
    # MPSC's own models: no other model runs its code.
    "ring/src/mpsc/": MODELS + ["--test", "loom_mpsc", "--test", "shuttle_mpsc"],
}
DEFAULT_TESTS = MODELS + RING


def tests_for(path):
    """The tests of the longest entry of TESTS that is `path` or a folder
    holding it."""
    for prefix in sorted(TESTS, key=len, reverse=True):
        if path == prefix or (prefix.endswith("/") and path.startswith(prefix)):
            return TESTS[prefix]
    return DEFAULT_TESTS


# ---------------------------------------------------------------------------
# Reading Rust: mask comments and literals, evaluate cfg
# ---------------------------------------------------------------------------


def mask(text):
    """`text` with comments and string/char literal contents replaced by
    spaces (newlines kept), so offsets and line numbers stay the same."""
    out = list(text)
    i, n = 0, len(text)

    def blank(a, b):
        for k in range(a, b):
            if out[k] != "\n":
                out[k] = " "

    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            blank(i, j)
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
            blank(i, j)
            i = j
        elif (m := re.compile(r'b?r(#*)"').match(text, i)) and (
            i == 0 or not (text[i - 1].isalnum() or text[i - 1] == "_")
        ):
            end = text.find('"' + m.group(1), m.end())
            end = n if end < 0 else end + 1 + len(m.group(1))
            blank(m.end(), end - 1 - len(m.group(1)))
            i = end
        elif c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            blank(i + 1, j)
            i = j + 1
        elif c == "'":
            if text.startswith("\\", i + 1):
                j = text.find("'", i + 2)
                blank(i + 1, j)
                i = j + 1
            elif i + 2 < n and text[i + 2] == "'":
                blank(i + 1, i + 2)
                i += 3
            else:  # a lifetime
                i += 1
        else:
            i += 1
    return "".join(out)


def target_cfg():
    """The cfg set of the test builds: rustc's target cfg plus the default
    features of the `ringproof` crate (with the features they enable)."""
    printed = subprocess.run(
        ["rustc", "--print", "cfg"], check=True, capture_output=True, text=True
    ).stdout
    cfg = set()
    for line in printed.splitlines():
        if "=" in line:
            key, value = line.split("=", 1)
            cfg.add((key, value.strip('"')))
        else:
            cfg.add(line)
    features = tomllib.loads((ROOT / "ring/Cargo.toml").read_text())["features"]
    todo, on = list(features.get("default", [])), set()
    while todo:
        f = todo.pop()
        if f.startswith("dep:") or "/" in f or f in on:
            continue
        on.add(f)
        todo.extend(features.get(f, []))
    cfg |= {("feature", f) for f in on}
    return cfg


def eval_cfg(pred, cfg):
    """Evaluates a cfg predicate (the text inside `cfg(...)`)."""
    tokens = re.findall(r'[A-Za-z_]\w*|"[^"]*"|[(),=]', pred)
    pos = 0

    def parse():
        nonlocal pos
        name = tokens[pos]
        pos += 1
        if pos < len(tokens) and tokens[pos] == "=":
            value = tokens[pos + 1].strip('"')
            pos += 2
            return (name, value) in cfg
        if pos < len(tokens) and tokens[pos] == "(":
            pos += 1
            args = []
            while tokens[pos] != ")":
                args.append(parse())
                if tokens[pos] == ",":
                    pos += 1
            pos += 1
            if name == "all":
                return all(args)
            if name == "any":
                return any(args)
            if name == "not":
                return not args[0]
            raise ValueError(f"unknown cfg operator {name}")
        return name in cfg

    return parse()


def balanced(code, start, open_, close):
    """Index just past the bracket matching the one at `start`."""
    depth = 0
    for j in range(start, len(code)):
        if code[j] == open_:
            depth += 1
        elif code[j] == close:
            depth -= 1
            if depth == 0:
                return j + 1
    raise ValueError("unbalanced brackets")


def dead_regions(text, code, cfg):
    """[(start, end, reason)] of the code not compiled in the test builds:
    reason is 'test' (compiled only in a crate's own unit tests) or the cfg."""
    regions = []
    for m in re.finditer(r"#(!?)\[\s*cfg\s*\(", code):
        inner_start = m.end()
        inner_end = balanced(code, m.end() - 1, "(", ")") - 1
        pred = text[inner_start:inner_end]
        if eval_cfg(pred, cfg):
            continue
        reason = "test" if eval_cfg(pred, cfg | {"test"}) else f"cfg({' '.join(pred.split())})"
        if m.group(1):  # #![cfg(...)]: the whole file
            regions.append((0, len(code), reason))
            continue
        # The item the attribute applies to: skip further attributes, then up
        # to its `;` or its `{ ... }` (whichever comes first at depth 0).
        j = balanced(code, code.index("[", m.start()), "[", "]")
        while True:
            k = len(code[j:]) - len(code[j:].lstrip())
            j += k
            if code.startswith("#[", j):
                j = balanced(code, j + 1, "[", "]")
            else:
                break
        depth = 0
        while j < len(code):
            ch = code[j]
            if ch in "([":
                depth += 1
            elif ch in ")]":
                depth -= 1
            elif ch == ";" and depth == 0:
                j += 1
                break
            elif ch == "{" and depth == 0:
                j = balanced(code, j, "{", "}")
                break
            j += 1
        regions.append((m.start(), j, reason))
    return regions


# ---------------------------------------------------------------------------
# Finding mutants
# ---------------------------------------------------------------------------

PATH = r"(?:[A-Za-z_]\w*::)*"
FENCE = re.compile(
    rf"(?<![\w.]){PATH}(?:compiler_)?fence\s*\(\s*{PATH}Ordering::(\w+)\s*\)"
)
HELPER = re.compile(r"(?:[A-Za-z_]\w*(?:\(\))?\s*\.\s*)+fence_seq_cst\s*\(\s*\)")
ORDER = re.compile(r"Ordering::(Acquire|Release|AcqRel|SeqCst)\b")
# Forms the patterns above do not cover: any of them fails the gate.
BARE = re.compile(r"(?<!Ordering::)\b(Acquire|Release|AcqRel|SeqCst)\b")
ANY_FENCE = re.compile(r"(?<![\w.])(?:compiler_)?fence\s*\(")
ANY_HELPER = re.compile(r"\.\s*fence_seq_cst\s*\(")


class Mutant:
    def __init__(self, path, text, start, end, replacement, what):
        self.path, self.start, self.end = path, start, end
        self.replacement, self.what = replacement, what
        self.line = text.count("\n", 0, start) + 1
        line_start = text.rfind("\n", 0, start) + 1
        line_end = text.find("\n", start)
        self.code = text[line_start:line_end].strip()
        self.id = f"{Path(path).name}:{self.line}"

    def apply(self, text):
        return text[: self.start] + self.replacement + text[self.end :]

    def __str__(self):
        return f"{self.path}:{self.line} {self.what}: {self.code}"


def find_mutants(path, text, cfg):
    """(mutants, skipped sites [(mutant, reason)], regions not compiled here
    that hold orderings [str], unsupported sites [str])."""
    code = mask(text)
    dead = dead_regions(text, code, cfg)

    def dead_reason(offset):
        for start, end, reason in dead:
            if start <= offset < end:
                return reason
        return None

    sites = []  # (start, end, replacement, what)
    covered = []
    for m in FENCE.finditer(code):
        covered.append((m.start(), m.end()))
        if m.group(1) in STRONG:
            sites.append((m.start(), m.end(), "()", f"{m.group(1)} fence removed"))
    for m in HELPER.finditer(code):
        covered.append((m.start(), m.end()))
        sites.append((m.start(), m.end(), "()", "fence_seq_cst() call removed"))
    for m in ORDER.finditer(code):
        if any(a <= m.start() < b for a, b in covered):
            continue
        sites.append(
            (m.start(1), m.end(1), "Relaxed", f"{m.group(1)}->Relaxed")
        )

    unsupported = []
    for pattern in (BARE, ANY_FENCE, ANY_HELPER):
        for m in pattern.finditer(code):
            if any(a <= m.start() < b for a, b in covered) or dead_reason(m.start()):
                continue
            if pattern is BARE and code[max(0, m.start() - 10) : m.start()] == "Ordering::":
                continue
            line = text.count("\n", 0, m.start()) + 1
            unsupported.append(f"{path}:{line}: {text.splitlines()[line - 1].strip()}")

    # Regions not compiled here that hold any ordering (even `Relaxed`): the
    # report names them, since no test run here can check them.
    uncompiled = []
    for start, end, reason in dead:
        if reason != "test" and re.search(r"Ordering::|fence", code[start:end]):
            first = text.count("\n", 0, start) + 1
            last = text.count("\n", 0, end) + 1
            uncompiled.append(f"lines {first}-{last} under {reason}")

    mutants, skipped = [], []
    for start, end, replacement, what in sorted(sites):
        mutant = Mutant(path, text, start, end, replacement, what)
        reason = dead_reason(start)
        if reason:
            skipped.append((mutant, reason))
        else:
            mutants.append(mutant)
    return mutants, skipped, uncompiled, unsupported


# ---------------------------------------------------------------------------
# Running
# ---------------------------------------------------------------------------


def cargo_test(scratch, args, log, timeout):
    """Exit status of `cargo test` with `args` in the scratch copy (124 on timeout)."""
    cmd = ["cargo", "test", "--locked", "-q", "--no-fail-fast", *args]
    with open(log, "w") as out:
        proc = subprocess.Popen(
            cmd, cwd=scratch, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            return proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait()
            return 124
        except BaseException:
            # Interrupted: stop the build before the scratch copy goes.
            os.killpg(proc.pid, 9)
            proc.wait()
            raise


def failed_tests(log):
    """The failing tests: cargo's failure lists, or the panicking threads
    when a loom deadlock aborted a test binary before it printed one."""
    text = Path(log).read_text(errors="replace")
    names = set(re.findall(r"^    ([a-z_0-9:]+)$", text, re.M))
    names |= set(re.findall(r"^thread '([a-z_0-9:]+)' \(\d+\) panicked", text, re.M))
    return sorted(names)


def main():
    started = time.monotonic()
    files_filter = re.compile(os.environ.get("MUTANT_FILES", ""))
    line_filter = os.environ.get("MUTANT_FILTER", "")
    if re.fullmatch(r"[0-9|()]+", line_filter):
        line_filter = rf":({line_filter})$"
    line_filter = re.compile(line_filter)
    timeout = int(os.environ.get("MUTANT_TIMEOUT", "300"))

    cfg = target_cfg()
    files = sorted(
        p.relative_to(ROOT).as_posix() for p in (ROOT / SRC).rglob("*.rs")
    )
    per_file, unsupported, texts, notes = {}, [], {}, {}
    for path in files:
        text = (ROOT / path).read_text()
        texts[path] = text
        mutants, skipped, uncompiled, bad = find_mutants(path, text, cfg)
        unsupported += bad
        if not files_filter.search(path):
            continue
        mutants = [m for m in mutants if line_filter.search(m.id)]
        per_file[path] = (mutants, skipped)
        notes[path] = uncompiled

    print("ordering mutants of ring/src, tests per file:")
    for path, (mutants, skipped) in per_file.items():
        print(f"  {path}: {len(mutants)} mutants; `cargo test {' '.join(tests_for(path))}`")
        for mutant, reason in skipped:
            why = "test code" if reason == "test" else f"not compiled on this target: {reason}"
            print(f"    skipped ({why}): line {mutant.line} {mutant.what}: {mutant.code}")
        for region in notes[path]:
            print(f"    not compiled on this target, not mutated: {region}")
    if unsupported:
        print("\norderings this script cannot mutate (spell them `Ordering::X`,"
              " call fences as `fence(Ordering::X)`):", file=sys.stderr)
        for site in unsupported:
            print(f"  {site}", file=sys.stderr)
        return 1
    if os.environ.get("MUTANT_LIST"):
        for mutants, _ in per_file.values():
            for m in mutants:
                print(f"  {m}")
        return 0

    scratch = Path(tempfile.mkdtemp(prefix="ringproof-mutants."))
    try:
        return run(scratch, per_file, texts, timeout, started)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def run(scratch, per_file, texts, timeout, started):
    os.environ.setdefault("CARGO_TARGET_DIR", str(ROOT / "target/mutants"))
    # shuttle runs atomics as SeqCst and so cannot see an ordering mutant; a
    # short shuttle run still checks that the mutant does not break interleavings.
    os.environ.setdefault("RINGPROOF_SHUTTLE_ITERATIONS", "20")
    # The copy: everything but build outputs and VCS data. Every file gets a
    # fresh mtime: cargo decides freshness by mtime, and the copy keeps the
    # originals' older ones, so a build of the last mutant left in the target
    # directory would otherwise pass for a build of this source.
    ignore = shutil.ignore_patterns("target", ".git")
    shutil.copytree(ROOT, scratch, ignore=ignore, dirs_exist_ok=True)
    for dirpath, _, filenames in os.walk(scratch):
        for name in filenames:
            os.utime(os.path.join(dirpath, name))

    # The unmutated code must pass every test command, or every mutant would
    # look caught.
    commands = {tuple(tests_for(path)) for path, (m, _) in per_file.items() if m}
    for args in sorted(commands):
        log = scratch / "baseline.log"
        print(f"baseline: cargo test {' '.join(args)}", flush=True)
        if cargo_test(scratch, list(args), log, timeout * 2) != 0:
            print("the tests fail without any mutant:", file=sys.stderr)
            print("\n".join(log.read_text().splitlines()[-40:]), file=sys.stderr)
            return 1

    results = {}
    for path, (mutants, _) in per_file.items():
        target = scratch / path
        for n, mutant in enumerate(mutants):
            target.write_text(mutant.apply(texts[path]))
            t0 = time.monotonic()
            log = scratch / f"log-{Path(path).stem}-{n}.txt"
            status = cargo_test(scratch, tests_for(path), log, timeout)
            took = time.monotonic() - t0
            text = log.read_text(errors="replace")
            if status == 0:
                outcome = "SURVIVED"
            elif re.search(r"^error(\[E\d+\])?:", text, re.M) and "could not compile" in text:
                outcome = "BUILD-FAILED"
            elif status == 124:
                outcome = "caught (timeout)"
            else:
                outcome = "caught"
            by = ", ".join(failed_tests(log)) or "?"
            line = f"{outcome} {mutant}" + (f"  by: {by}" if outcome == "caught" else "")
            print(f"== [{took:5.0f}s] {line}", flush=True)
            results.setdefault(path, []).append((outcome, mutant, line))
            if outcome == "BUILD-FAILED":
                print("\n".join(text.splitlines()[-20:]))
        target.write_text(texts[path])

    total_caught = total_bad = 0
    print("\nordering mutants: per file")
    for path, (mutants, skipped) in per_file.items():
        got = results.get(path, [])
        caught = sum(o.startswith("caught") for o, _, _ in got)
        bad = len(got) - caught
        total_caught += caught
        total_bad += bad
        print(f"  {path}: {len(got)} mutants, {caught} caught, {bad} survived"
              f" ({len(skipped)} sites skipped)")
    # Known survivors still being worked on (OPEN_LIST): printed, not
    # failing; an entry whose mutant is caught, or no longer exists, fails
    # the run, so the list can only shrink.
    open_list = read_open_list()
    survivors, open_now, failed = [], [], False
    seen_keys = set()
    for path, got in results.items():
        for outcome, mutant, line in got:
            key = open_key(mutant)
            seen_keys.add(key)
            if outcome.startswith("caught"):
                if key in open_list:
                    print(f"\nSTALE open entry (now caught, remove it from {OPEN_LIST}): {key}")
                    failed = True
            elif key in open_list:
                open_now.append(f"{line}\n      open: {open_list[key]}")
            else:
                survivors.append(line)
    for key in open_list:
        if key.split(":", 1)[0] in per_file and key not in seen_keys:
            print(f"\nSTALE open entry (no such mutant, remove it from {OPEN_LIST}): {key}")
            failed = True
    if open_now:
        print(f"\nOPEN survivors, tracked in {OPEN_LIST} (not failing this run):")
        for line in open_now:
            print(f"  {line}")
    if survivors:
        print("\nsurvivors (no test fails with the weaker ordering):")
        for line in survivors:
            print(f"  {line}")
    minutes, seconds = divmod(int(time.monotonic() - started), 60)
    print(f"\nordering mutants: {total_caught} caught, {total_bad - len(open_now)} survived, "
          f"{len(open_now)} open, {minutes}m{seconds:02}s")
    return 1 if survivors or failed else 0


OPEN_LIST = "ci/ordering-mutants-open.txt"


def open_key(mutant):
    """`path: what: code`, without the line number (stable across edits)."""
    return f"{mutant.path}: {mutant.what}: {mutant.code}"


def read_open_list():
    """{key: reason} from OPEN_LIST: `<key> # open: <reason>` per line."""
    entries = {}
    path = ROOT / OPEN_LIST
    if not path.exists():
        return entries
    for n, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, reason = line.partition(" # open: ")
        if not sep or not reason.strip():
            sys.exit(f"{OPEN_LIST}:{n}: an entry needs ' # open: <reason>'")
        entries[key.strip()] = reason.strip()
    return entries


if __name__ == "__main__":
    sys.exit(main())
