"""``python -m tests.preflight``: stop before the suite when a tool it drives is missing.

One line per problem, naming the package to install; exit status 1 if any.
"""

from __future__ import annotations

import sys

from tests.tools import TOOLS, problem


def main() -> int:
    problems = [line for line in map(problem, TOOLS) if line is not None]
    for line in problems:
        print(f"preflight: {line}", file=sys.stderr)
    if not problems:
        print(f"preflight: {len(TOOLS)} external tools present with the features the tests use")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
