"""Exit codes of the offline tools (``bin/plan``, ``bin/check-app``), one contract for a CI gate.

A gate must tell a policy verdict from a typo and from a crash: 1 only ever means "the pack refused".
Kept here, importable without the engine, so every entry point shares the same numbers.
"""

OK = 0  # clean: no mandatory violation (advisories may be printed)
POLICY = 1  # at least one mandatory policy violation
INPUT = 2  # bad config or input: missing/invalid file, YAML error (file and line named), bad arguments
INTERNAL = 3  # internal error, or the program itself raised: one-line summary, traceback only under --debug
