"""benchctl.slurm.states: every Slurm state text maps onto benchctl's small state set."""

from __future__ import annotations

import pytest

from benchctl.slurm.states import FINAL_STATES, JobState, map_state

# (long name, compact code, expected) -- squeue(1) "JOB STATE CODES".
SLURM_STATES = [
    ("PENDING", "PD", JobState.PENDING),
    ("CONFIGURING", "CF", JobState.PENDING),
    ("RESV_DEL_HOLD", "RD", JobState.PENDING),
    ("REQUEUE_FED", "RF", JobState.REQUEUED),
    ("REQUEUE_HOLD", "RH", JobState.REQUEUED),
    ("REQUEUED", "RQ", JobState.REQUEUED),
    ("SPECIAL_EXIT", "SE", JobState.REQUEUED),
    ("RUNNING", "R", JobState.RUNNING),
    ("RESIZING", "RS", JobState.RUNNING),
    ("SIGNALING", "SI", JobState.RUNNING),
    ("STAGE_OUT", "SO", JobState.COMPLETING),
    ("COMPLETING", "CG", JobState.COMPLETING),
    ("COMPLETED", "CD", JobState.COMPLETED),
    ("FAILED", "F", JobState.FAILED),
    ("BOOT_FAIL", "BF", JobState.FAILED),
    ("DEADLINE", "DL", JobState.FAILED),
    ("REVOKED", "RV", JobState.CANCELLED),
    ("CANCELLED", "CA", JobState.CANCELLED),
    ("TIMEOUT", "TO", JobState.TIMEOUT),
    ("OUT_OF_MEMORY", "OOM", JobState.OUT_OF_MEMORY),
    ("NODE_FAIL", "NF", JobState.NODE_FAIL),
    ("PREEMPTED", "PR", JobState.PREEMPTED),
    ("SUSPENDED", "S", JobState.SUSPENDED),
    ("STOPPED", "ST", JobState.SUSPENDED),
]


@pytest.mark.parametrize(("long", "code", "expected"), SLURM_STATES, ids=[s[0] for s in SLURM_STATES])
def test_long_name_and_compact_code_map(long: str, code: str, expected: JobState) -> None:
    assert map_state(long) is expected
    assert map_state(code) is expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("CANCELLED by 0", JobState.CANCELLED),  # sacct after scancel by root
        ("CANCELLED by 1234", JobState.CANCELLED),
        ("CANCELLED+", JobState.CANCELLED),  # sacct truncates long states with '+'
        ("OUT_OF_ME+", JobState.OUT_OF_MEMORY),  # sacct's default width cuts the name; one state begins so
        ("running", JobState.RUNNING),
        ("Completed", JobState.COMPLETED),
        ("pd", JobState.PENDING),
        ("  TIMEOUT \n", JobState.TIMEOUT),
        ("FAILED ", JobState.FAILED),
    ],
)
def test_decorated_state_text(text: str, expected: JobState) -> None:
    assert map_state(text) is expected


@pytest.mark.parametrize("text", ["", "   ", "BOGUS", "RUNNING_SOON", "42", "None"])
def test_unknown_text_maps_to_unknown_without_raising(text: str) -> None:
    assert map_state(text) is JobState.UNKNOWN


def test_final_states_exactly() -> None:
    final = {s for s in JobState if s.is_final}
    assert final == {JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED, JobState.TIMEOUT,
                     JobState.OUT_OF_MEMORY, JobState.NODE_FAIL, JobState.GONE}
    assert final == set(FINAL_STATES)


def test_active_states_exactly() -> None:
    active = {s for s in JobState if s.is_active}
    assert active == {JobState.PENDING, JobState.RUNNING, JobState.COMPLETING, JobState.SUSPENDED,
                      JobState.REQUEUED, JobState.PREEMPTED}


@pytest.mark.parametrize("state", [JobState.PREEMPTED, JobState.REQUEUED])
def test_preempted_and_requeued_may_come_back(state: JobState) -> None:
    assert not state.is_final
    assert state.is_active


def test_unknown_is_neither_final_nor_active() -> None:
    assert not JobState.UNKNOWN.is_final
    assert not JobState.UNKNOWN.is_active


def test_no_state_is_both_final_and_active() -> None:
    assert not any(s.is_final and s.is_active for s in JobState)


def test_only_completed_is_ok() -> None:
    assert [s for s in JobState if s.ok] == [JobState.COMPLETED]


def test_values_are_what_users_see() -> None:
    for state in JobState:
        assert state.value == state.name
        # GONE is benchctl's own (the scheduler no longer knows the job): Slurm never prints it.
        assert map_state(state.value) is (JobState.UNKNOWN if state is JobState.GONE else state)
