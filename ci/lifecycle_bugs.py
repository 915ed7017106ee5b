#!/usr/bin/env python3
"""Seeded lifecycle bugs (called by ci/lifecycle-bugs).

Each bug is one textual change to the SHIPPED decision code,
ring/src/shm/lifecycle.rs (the functions that `segment::Posix` and the
endpoints call). For each, the script copies the workspace to a scratch
directory (the working tree is never modified), applies the change, runs the
named shuttle scenarios of models/tests/shuttle_lifecycle.rs, and expects
them to FAIL. A bug the model does not catch fails the gate, except the
ones listed as EXPECTED_SURVIVOR (with the reason), which are reported.

Environment:
  RINGPROOF_SHUTTLE_ITERATIONS  iterations per scheduler (default here 2000)
  BUG_FILTER                    regex on the bug's id (e.g. 'iii|iv')
"""

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FILE = "ring/src/shm/lifecycle.rs"

# (id, what, old text, new text, scenarios expected to catch it)
BUGS = [
    (
        "i",
        "leave drops its lease before it takes the name lock",
        """    let other = role.other();
    let _ = remove_name_unless(ns, file, name, |f| {
        drop(lease);
""",
        """    let other = role.other();
    drop(lease);
    let _ = remove_name_unless(ns, file, name, |f| {
""",
        ["f_successor_attaches_while_predecessor_leaves"],
    ),
    (
        "ii-clean",
        "remove_stale removes the name without re-checking that it still refers to its file",
        """    if ns.named_id(name)? != Some(id) {""",
        """    if false && ns.named_id(name)? != Some(id) {""",
        ["a_two_sides_leave_while_the_name_is_created_anew"],
    ),
    (
        "ii-leave",
        "remove_name_unless (leave, reclaim) removes without re-checking the name's identity",
        """    if keep(file)? || ns.named_id(name)? != Some(ns.file_id(file)) {""",
        """    if keep(file)? {""",
        ["g_forced_removal_then_new_segment"],
    ),
    (
        "iii",
        "an opener does not confirm the name after claiming its role",
        """    if !confirm(ns, &file, name)? {
        // The segment we opened""",
        """    if false {
        // The segment we opened""",
        ["b_clean_races_attaching_consumer"],
    ),
    (
        "iv",
        "open treats a file that is not initialised yet as an error (the old start-race bug)",
        """            Look::Initialising { creator_alive } => {
""",
        """            Look::Initialising { .. } => {
                return Err(ShmError::NeverInitialised(name.to_string()));
            }
            #[allow(unreachable_patterns)]
            Look::Initialising { creator_alive } => {
""",
        ["d_creator_and_opener_start_together"],
    ),
]

# Bugs the lifecycle rules make harmless, with the reason (see models/README.md).
EXPECTED_SURVIVOR = {}


def main():
    iterations = os.environ.get("RINGPROOF_SHUTTLE_ITERATIONS", "2000")
    only = os.environ.get("BUG_FILTER")
    os.environ.setdefault("CARGO_TARGET_DIR", str(ROOT / "target/lifecycle-bugs"))
    scratch = Path(tempfile.mkdtemp(prefix="ringproof-lifecycle-bugs-"))
    failures = []
    try:
        shutil.copytree(
            ROOT, scratch, ignore=shutil.ignore_patterns("target", ".git"), dirs_exist_ok=True
        )
        original = (ROOT / FILE).read_text()
        for bug, what, old, new, scenarios in BUGS:
            if only and not re.search(only, bug):
                continue
            if original.count(old) != 1:
                failures.append(f"{bug}: the text to change is not in {FILE} exactly once")
                continue
            (scratch / FILE).write_text(original.replace(old, new))
            for scenario in scenarios:
                for scheduler in ("random", "pct"):
                    test = f"{scenario}_{scheduler}"
                    started = time.monotonic()
                    result = subprocess.run(
                        ["cargo", "test", "--locked", "-p", "ringproof-models",
                         "--test", "shuttle_lifecycle", "--", "--exact", test],
                        cwd=scratch, capture_output=True, text=True,
                        env={**os.environ, "RINGPROOF_SHUTTLE_ITERATIONS": iterations},
                    )
                    seconds = time.monotonic() - started
                    log = result.stdout + result.stderr
                    if "error[" in log:
                        failures.append(f"{bug}: does not build:\n{log}")
                        break
                    caught = result.returncode != 0
                    found = re.search(r"((U1|U2|E1|E4) violated[^\n]{0,160}|\([a-f]'?\)[^\n]{0,120})", log)
                    why = found.group(1) if caught and found else ""
                    print(f"bug {bug} ({what}): {test}: "
                          f"{'CAUGHT' if caught else 'survived'} in {seconds:.1f}s {why}")
                    if not caught and bug not in EXPECTED_SURVIVOR:
                        failures.append(f"{bug}: survived {test}")
            if bug in EXPECTED_SURVIVOR:
                print(f"bug {bug}: expected survivor: {EXPECTED_SURVIVOR[bug]}")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    for failure in failures:
        print(f"FAIL {failure}", file=sys.stderr)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
