"""Every command page has an example, and no summary in a command list is cut off."""

from __future__ import annotations

import re
from collections.abc import Iterator

import click
import pytest
from click.testing import CliRunner

from mailstead.cli import main

# Commands whose help another change is rewriting (cli/init.py): their examples come
# with it. Each must leave this set once it has one.


def commands(
    group: click.Group = main, path: str = "mailstead"
) -> Iterator[tuple[str, click.Command]]:
    yield path, group
    for name, command in sorted(group.commands.items()):
        if isinstance(command, click.Group):
            yield from commands(command, f"{path} {name}")
        else:
            yield f"{path} {name}", command


ALL = [path for path, _ in commands()]


def help_page(path: str) -> str:
    result = CliRunner().invoke(main, [*path.split()[1:], "--help"], terminal_width=80)
    assert result.exit_code == 0, result.output
    return result.output


@pytest.mark.parametrize("path", ALL)
def test_every_command_page_has_an_example(path: str) -> None:
    page = help_page(path)
    found = re.search(r"\n  Examples?:\n((?:    .*\n)+)", page)
    assert found is not None, page
    # Shown as written (click's \b): at least one whole command line.
    assert "mailstead " in found.group(1), found.group(1)


@pytest.mark.parametrize("path", [p for p, c in commands() if isinstance(c, click.Group)])
def test_command_lists_show_whole_summaries(path: str) -> None:
    listing = help_page(path).split("\nCommands:\n", 1)[1]
    assert "..." not in listing, listing
    group = dict(commands())[path]
    assert isinstance(group, click.Group)
    for name, command in group.commands.items():
        first_sentence = command.get_short_help_str(limit=10_000)
        # write_dl wraps a summary over several lines: compare without the layout.
        assert first_sentence in " ".join(listing.split()), name
