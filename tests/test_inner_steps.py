"""The μ cycle (``unigrpo.inner_steps``): the order of (n, slot) in a cycle, its state round trip, resuming inside
and at the boundary of a cycle, and that the batch sampler yields each window once per micro-step of it."""

import pytest

from unigrpo.data_parallel import RepeatedBatchSampler
from unigrpo.inner_steps import InnerStep, InnerStepCycle


def test_a_cycle_runs_every_slot_of_each_inner_step_then_the_next_window_is_fresh():
    cycle = InnerStepCycle(accumulation=2, num_iterations=3)
    steps = [cycle.advance() for _ in range(8)]
    assert [(s.n, s.slot, s.fresh) for s in steps] == [
        (0, 0, True), (0, 1, False), (1, 0, False), (1, 1, False), (2, 0, False), (2, 1, False),  # window 0
        (0, 0, True), (0, 1, False),  # window 1
    ]
    assert [s.cycle for s in steps] == [0] * 6 + [1] * 2
    assert cycle.length == 6 and cycle.micro_step == 8 and cycle.cycle == 1


def test_only_a_cycle_boundary_is_closed():
    cycle = InnerStepCycle(accumulation=2, num_iterations=3)
    open_after = []
    for _ in range(7):
        cycle.advance()
        open_after.append(cycle.is_open)
    assert open_after == [True] * 5 + [False, True]


def test_stored_rollouts_are_served_per_slot_and_survive_a_state_round_trip():
    cycle = InnerStepCycle(accumulation=2, num_iterations=3)
    cycle.advance()
    cycle.store(["slot 0", "slot 1"])  # stand-ins for Rollouts: the cycle never looks inside
    for _ in range(2):
        cycle.advance()
    restored = InnerStepCycle(accumulation=2, num_iterations=3)
    restored.load_state_dict(cycle.state_dict())
    assert restored.micro_step == 3 and restored.rollouts_for(1) == "slot 1"
    assert restored.advance() == cycle.advance() == InnerStep(0, 1, 1)


def test_reset_inside_a_cycle_continues_its_inner_steps_without_new_rollouts():
    cycle = InnerStepCycle(accumulation=2, num_iterations=3)
    cycle.store(["stale"])
    cycle.reset_to_step(4)  # 4 optimizer steps = 8 micro-steps: inner step n = 1 of window 1
    assert cycle.micro_step == 8 and cycle.is_open and cycle.rollouts == {}
    assert cycle.advance() == InnerStep(cycle=1, n=1, slot=0)
    with pytest.raises(RuntimeError, match="slot 0 at micro-step 9.*without its saved rollouts"):
        cycle.rollouts_for(0)


def test_reset_at_a_cycle_boundary_starts_a_fresh_window():
    cycle = InnerStepCycle(accumulation=2, num_iterations=3)
    cycle.reset_to_step(3)  # μ = 3 optimizer steps: window 0 is done
    assert cycle.micro_step == 6 and not cycle.is_open
    step = cycle.advance()
    assert step == InnerStep(cycle=1, n=0, slot=0) and step.fresh


@pytest.mark.parametrize("accumulation,num_iterations", [(1, 1), (2, 3), (3, 2)])
def test_the_sampler_yields_each_window_once_per_micro_step_of_its_cycle(accumulation, num_iterations):
    cycle = InnerStepCycle(accumulation, num_iterations)
    batches = list(RepeatedBatchSampler(24, 2, cycle, seed=1))
    assert len(batches) == (24 // (2 * accumulation)) * cycle.length
    windows = []
    for batch in batches:
        step = cycle.advance()
        if step.fresh:
            windows.append(batch)
        assert batch == windows[step.cycle]  # every micro-step of a cycle sees the window its rollouts came from
    assert len({tuple(w) for w in windows}) == len(windows)  # and each cycle a new window
