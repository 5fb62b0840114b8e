"""The line format every test program prints: PASS or FAIL, the suite, the check's name, what was measured.
dev/run_tests.sh counts these lines; a program exits 1 if any check failed."""
import os
import sys


class Checks:
    def __init__(self, suite):
        self.suite, self.failures = suite, 0

    def check(self, name, ok, detail):
        ok = bool(ok)
        self.failures += not ok
        print(f"{'PASS' if ok else 'FAIL'} {self.suite}: {name}: {detail}", flush=True)

    def skip(self, name, reason):
        print(f"SKIP {self.suite}: {name}: skipped: {reason}", flush=True)

    def exit(self):
        sys.exit(1 if self.failures else 0)


def table_cells(line):
    """The cells of one markdown table row ("| a | b |" -> ["a", "b"]), stripped: the tables the tests read."""
    return [c.strip() for c in line.strip().strip("|").split("|")]


def table_rows(path):
    """The cells of every row of the markdown table in the file at path (lines starting "| "); [] if no file."""
    text = open(path).read() if os.path.exists(path) else ""
    return [table_cells(line) for line in text.splitlines() if line.startswith("| ")]
