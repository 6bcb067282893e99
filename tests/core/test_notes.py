"""mheads.core.notes: a note marked ONCE is said once while a command runs, every time outside one; an
unmarked line and a warning (marked or not) are said every time."""

import logging

from mheads.core.notes import ONCE, once_per_command

log = logging.getLogger("mheads")


def _say_twice() -> None:
    for _ in range(2):
        log.info("no held-out split", extra=ONCE)
        log.info("iteration 4/4")
        log.warning("3 images could not be read", extra=ONCE)


def _said(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records]


def test_a_marked_note_is_said_once_per_command_and_nothing_else_is_dropped(caplog):
    caplog.set_level(logging.INFO, logger="mheads")
    with once_per_command():
        _say_twice()
    assert _said(caplog) == [
        "no held-out split",
        "iteration 4/4",
        "3 images could not be read",
        "iteration 4/4",
        "3 images could not be read",
    ]
    caplog.clear()
    with once_per_command():  # the next command says it again
        log.info("no held-out split", extra=ONCE)
    log.info("no held-out split", extra=ONCE)  # outside a command (Python's fit): every time
    assert _said(caplog) == ["no held-out split"] * 2
    assert not log.filters  # the command's filter is gone with it
