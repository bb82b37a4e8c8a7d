#!/usr/bin/python3
"""Sums JUnit XML files (Catch2 and pytest): lists failures, prints "N passed, N failed" as the
last line, exits 1 when anything failed. A skipped test counts as failed: a test that cannot run
here must say what to install, not vanish from the count."""
import sys
import xml.etree.ElementTree as ET


def main(paths):
    passed = failed = 0
    failures = []
    for path in paths:
        # A layer that did not get as far as writing its results (a build that failed, an
        # unexpanded glob) is a failure, not a crash of the summary.
        try:
            root = ET.parse(path).getroot()
        except (OSError, ET.ParseError) as e:
            failed += 1
            failures.append(f"  FAILED {path}: no test results ({e.__class__.__name__})")
            continue
        for case in root.iter("testcase"):
            name = f"{case.get('classname', '')}::{case.get('name', '')}"
            bad = [c for c in case if c.tag in ("failure", "error", "skipped")]
            if bad:
                failed += 1
                first = bad[0]
                msg = (first.get("message") or first.text or "").strip().splitlines()
                failures.append(f"  FAILED {name}: {first.tag}: {msg[0] if msg else ''}"[:400])
            else:
                passed += 1
    if failures:
        print("failures:")
        print("\n".join(failures))
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
