"""`python -m mailstead` runs the command-line interface."""

from mailstead.cli import main

main()
