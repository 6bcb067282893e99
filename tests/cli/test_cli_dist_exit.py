"""A rank that lost another ends with exit 4 and one line, skipping the interpreter's teardown: the broken
process group's destructor would otherwise abort it (SIGABRT) after the line was printed."""

import pytest

import mheads.cli.commands as commands
from mheads.config import ConfigError
from mheads.dist import DistributedFailure


class _Exited(Exception):
    pass


@pytest.fixture
def exits(monkeypatch):
    codes: list[int] = []

    def fake_exit(code: int) -> None:
        codes.append(code)
        raise _Exited

    monkeypatch.setattr(commands.os, "_exit", fake_exit)
    return codes


def test_a_lost_rank_exits_4_at_once_after_its_one_line(monkeypatch, capsys, exits):
    line = "lost rank 2 of 3: it died; rank 0 stopped during broadcast"

    def lose(args):
        raise DistributedFailure(line, 2)

    monkeypatch.setitem(commands.COMMANDS, "list-models", lose)
    with pytest.raises(_Exited):
        commands.main(["list-models"])
    assert exits == [commands.EXIT_DIST] == [4]
    assert (
        capsys.readouterr().err
        == "mheads: error: lost rank 2 of 3: it died; rank 0 stopped during broadcast\n"
    )


def test_other_errors_return_their_code_through_the_normal_exit(monkeypatch, capsys, exits):
    def bad(args):
        raise ConfigError("data.batch_size: got 0; expected an integer >= 1")

    monkeypatch.setitem(commands.COMMANDS, "list-models", bad)
    assert commands.main(["list-models"]) == commands.EXIT_BAD_INPUT
    assert exits == []
