"""The run state a checkpoint carries (RunState), and what a resumed run accepts of an edited one."""

from __future__ import annotations

import pytest

from mheads.optim.schedules import Schedule
from mheads.runs.checkpoint import CheckpointError
from mheads.train.state import RunState, check_run_state


def saved_state() -> dict:
    st = RunState(step=6, skipped_total=1, run_loss=2.5, run_n=3)
    schedule = Schedule(kind="fixed", base_lr=0.1)
    return st.to_checkpoint(6, {"state": {}, "param_groups": []}, schedule, 1.0)


def test_a_saved_state_passes_and_reads_back():
    state = saved_state()
    check_run_state(state, "state.pt")
    assert RunState.from_checkpoint(state).step == 6


@pytest.mark.parametrize(
    ("key", "value", "allowed"),
    [
        ("skipped", "junk", "an integer >= 0"),
        ("step", -1, "an integer >= 0"),
        ("step", True, "an integer >= 0"),
        ("run_n", 1.5, "an integer >= 0"),
        ("run_loss", "a", "a number"),
        ("wall_time_s", None, "a number"),
        ("wins", [1, "x"], "null or a list of integers >= 0"),
        ("optimizer", "junk", "an object"),
        ("schedule", [1], "an object"),
    ],
)
def test_an_edited_field_is_one_line_naming_the_file_and_field(key, value, allowed):
    state = {**saved_state(), key: value}
    with pytest.raises(CheckpointError, match=rf"^ck/state.pt: {key}: got .*; expected {allowed}") as info:
        check_run_state(state, "ck/state.pt")
    assert "\n" not in str(info.value)


def test_a_missing_count_is_refused():
    state = saved_state()
    del state["skipped_total"]
    with pytest.raises(CheckpointError, match="skipped_total: got None; expected an integer >= 0"):
        check_run_state(state, "state.pt")
