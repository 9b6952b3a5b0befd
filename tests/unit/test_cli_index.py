"""The CLI's static command index matches what the command modules register, so a command line
that imports only its own module still finds every command."""

from __future__ import annotations

import pytest

from portside.engine import cli

pytestmark = pytest.mark.unit


def test_index_matches_the_registered_commands():
    cli._load_commands()
    actual: dict[str, set[str]] = {}
    for cmd in cli.COMMANDS:
        module = cmd.handler.__module__.rsplit(".", 1)[1]
        if cmd.group:
            actual.setdefault(cmd.group, set()).add(module)
        if not cmd.group or cmd.top_level:
            actual.setdefault(cmd.top_name or cmd.name, set()).add(module)
            if not cmd.group:
                for alias in cmd.aliases:
                    actual.setdefault(alias, set()).add(module)
    assert {k: set(v) for k, v in cli.COMMAND_INDEX.items()} == actual


@pytest.mark.parametrize("argv, modules", [
    (["ps", "-a"], ("containers",)),
    (["--root", "/x", "images"], ("images",)),
    (["image", "ls"], ("build", "contexts", "images", "registry", "repro")),
    (["-c", "gpu", "ps"], ("containers",)),
    (["--context=gpu", "context", "ls"], ("contexts",)),
    (["inspect", "x"], None),
    (["--help"], None),
    (["nosuchcommand"], None),
])
def test_a_command_line_loads_only_its_modules(argv, modules):
    assert cli._modules_for(argv) == modules


def test_every_command_parses_with_only_its_own_modules():
    cli._load_commands()
    for word, modules in cli.COMMAND_INDEX.items():
        parser = cli.build_parser(modules=modules)
        choices = parser._subparsers._group_actions[0].choices
        assert word in choices
