"""Day-2 matrix: each test runs the program twice (before/after a config change) under the mock engine."""
