"""The μ cycle of UniGRPO's inner steps (MMaDA §2.3, Algorithm 1): one owner for its counter and its rollouts.

One optimizer step trains on a window of ``accumulation`` micro-batches per process; the window's rollouts are
made once and reused for ``num_iterations`` (μ) optimizer steps, each with its own noised view. So one *cycle*
is GA·μ micro-steps, in this order (GA = 2, μ = 3; ``fresh``: this micro-step makes the window's rollouts)::

    micro-step   0     1     2     3     4     5   | 6 ...
    (n, slot)  (0,0) (0,1) (1,0) (1,1) (2,0) (2,1) | (0,0) of the next cycle, fresh again
    optimizer step ends after slot GA - 1 of each n

The batch sampler yields each window once per micro-step of its cycle (``unigrpo.data_parallel
.RepeatedBatchSampler``), the trainer asks ``advance`` which inner step and slot a micro-step is, and resume
saves and restores ``state_dict`` (``unigrpo.resume``). The seeds of every rollout and mask draw derive from
``cycle`` (``unigrpo.data_parallel.rollout_seed``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from .rollout_batches import Rollouts


class InnerStep(NamedTuple):
    """Where one micro-step sits in its cycle."""

    cycle: int  # index of the window (0, 1, ...)
    n: int  # inner step: which of the μ views this micro-step trains on
    slot: int  # accumulation slot: which of this process's micro-batches of the window

    @property
    def fresh(self) -> bool:
        """The window's first micro-step: its rollouts must be made now."""
        return self.n == 0 and self.slot == 0


class InnerStepCycle:
    """The micro-step counter and the current window's rollouts (one ``Rollouts`` per accumulation slot)."""

    def __init__(self, accumulation: int, num_iterations: int):
        self.accumulation, self.num_iterations = accumulation, num_iterations
        self.micro_step = 0  # micro-steps advanced so far
        self.rollouts: dict[int, Rollouts] = {}

    @property
    def length(self) -> int:
        """Micro-steps of one cycle (GA·μ): how often the sampler yields each window."""
        return self.accumulation * self.num_iterations

    @property
    def cycle(self) -> int:
        """Index of the window the next micro-step belongs to."""
        return self.micro_step // self.length

    @property
    def is_open(self) -> bool:
        """Inside a cycle (not at its boundary): the next micro-steps reuse the stored rollouts, so a checkpoint
        written now must hold them."""
        return self.micro_step % self.length != 0

    def advance(self) -> InnerStep:
        """The next micro-step's (cycle, n, slot); counts it."""
        cycle, position = divmod(self.micro_step, self.length)
        n, slot = divmod(position, self.accumulation)
        self.micro_step += 1
        return InnerStep(cycle, n, slot)

    def store(self, rollouts: list[Rollouts]) -> None:
        """The window's rollouts, slot by slot (made at its fresh micro-step)."""
        self.rollouts = dict(enumerate(rollouts))

    def rollouts_for(self, slot: int) -> Rollouts:
        if slot not in self.rollouts:
            raise RuntimeError(f"no rollouts for accumulation slot {slot} at micro-step {self.micro_step}: a cycle "
                               f"was entered in its middle without its saved rollouts (load_state_dict)")
        return self.rollouts[slot]

    def reset_to_step(self, global_step: int) -> None:
        """The counter after ``global_step`` optimizer steps (GA micro-steps each), no rollouts: where a resumed
        run starts (inside a cycle, ``load_state_dict`` then brings the rollouts back)."""
        self.micro_step = global_step * self.accumulation
        self.rollouts = {}

    def state_dict(self) -> dict:
        """What a checkpoint inside a cycle saves: the counter and the window's rollouts."""
        return {"micro_step": self.micro_step, "rollouts": self.rollouts}

    def load_state_dict(self, state: dict) -> None:
        self.micro_step = state["micro_step"]
        self.rollouts = dict(state["rollouts"])
