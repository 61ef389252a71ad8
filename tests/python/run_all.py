#!/usr/bin/python3
"""Run every tests/python/test_*.py (or the files given) in one process and finish with
the line "N passed, M failed". Exit status 0 only if everything passed.

  /usr/bin/python3 tests/python/run_all.py [test_auth.py ...]
"""

import importlib
import os
import sys
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)


class CountingResult(unittest.TextTestResult):
    """Counts every test once: failed if it or any of its subtests failed."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.failed_ids = set()
        self.passed_ids = set()

    def addSuccess(self, test):
        super().addSuccess(test)
        self.passed_ids.add(test.id())

    def addFailure(self, test, err):
        super().addFailure(test, err)
        self.failed_ids.add(test.id())

    def addError(self, test, err):
        super().addError(test, err)
        self.failed_ids.add(test.id())   # includes setUpClass/tearDownClass errors

    def addSubTest(self, test, subtest, err):
        super().addSubTest(test, subtest, err)
        if err is not None:
            self.failed_ids.add(test.id())

    def addUnexpectedSuccess(self, test):
        super().addUnexpectedSuccess(test)
        self.failed_ids.add(test.id())


def main(argv):
    files = argv or sorted(f for f in os.listdir(HERE) if f.startswith("test_") and f.endswith(".py"))
    suite = unittest.TestSuite()
    loader = unittest.defaultTestLoader
    for f in files:
        name = os.path.splitext(os.path.basename(f))[0]
        suite.addTests(loader.loadTestsFromModule(importlib.import_module(name)))
    t0 = time.monotonic()
    runner = unittest.TextTestRunner(verbosity=2, resultclass=CountingResult)
    result = runner.run(suite)
    failed = len(result.failed_ids)
    passed = len(result.passed_ids - result.failed_ids)
    sys.stdout.flush()
    print("python suite: %.1f s" % (time.monotonic() - t0))
    print("%d passed, %d failed" % (passed, failed))
    return 0 if failed == 0 and result.wasSuccessful() else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
