"""The sampling schedule of watch: which steps measure what.

Gradient norms are recorded on every step. The costlier statistics (weight norms, update
norms, activation statistics), each with its period k, are measured on steps 1, 1+k, 1+2k, ...
and, within the first k steps, also on steps 2, 4, 8, ...: dense at the start of a run, where
init problems show first. The default periods were chosen with ``benchmarks/overhead.py``
(``benchmarks/README.md``).

Example:
    >>> s = Schedule(activation_every=10)
    >>> [step for step in range(1, 30) if s.activations(step)]
    [1, 2, 4, 8, 11, 21]
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from graddoctor.errors import InputError

#: steps between host transfers (the ring buffer's size)
FLUSH_EVERY = 50
#: period of the update-norm measurements (one weight copy during that step)
UPDATE_EVERY = 200
#: period of the weight-norm measurements (= UPDATE_EVERY: the update/weight ratio needs both)
WEIGHT_EVERY = 200
#: period of the activation statistics
ACTIVATION_EVERY = 100
#: sampled batches over which a ReLU unit must stay inactive to count as dead
DEAD_WINDOW = 10


def due(step: int, every: int) -> bool:
    """Whether step ``step`` (from 1) is sampled by a period of ``every`` steps (0: never).

    Args:
        step: the step number, from 1.
        every: the period k; 0 never samples.

    Returns:
        True on steps 1, 1+k, 1+2k, ... and on the powers of two below k.

    Example:
        >>> [s for s in range(1, 30) if due(s, 10)], due(5, 0)
        ([1, 2, 4, 8, 11, 21], False)
    """
    return every > 0 and ((step - 1) % every == 0 or (step < every and step & (step - 1) == 0))


@dataclass(frozen=True)
class Schedule:
    """The periods of watch's measurements, checked once.

    Args:
        flush_every: steps between host transfers (the ring buffer's size).
        update_every: period of the update-norm measurements.
        weight_every: period of the weight-norm measurements (also measured with the updates).
        activation_every: period of the activation statistics (0: never).
        dead_window: sampled batches over which a ReLU unit must stay inactive to be dead.

    Raises:
        InputError: a period that is not a positive int (``activation_every``: not an int >= 0).

    Example:
        >>> s = Schedule(update_every=4, weight_every=8)
        >>> [step for step in range(1, 10) if s.weights(step)], s.updates(5)
        ([1, 2, 4, 5, 9], True)
    """

    flush_every: int = FLUSH_EVERY
    update_every: int = UPDATE_EVERY
    weight_every: int = WEIGHT_EVERY
    activation_every: int = ACTIVATION_EVERY
    dead_window: int = DEAD_WINDOW

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            v, least = getattr(self, field.name), 0 if field.name == "activation_every" else 1
            if not isinstance(v, int) or v < least:
                what = "an int >= 0 (0 = off)" if least == 0 else "a positive int"
                raise InputError(f"{field.name} must be {what}, got {v!r}")

    def updates(self, step: int) -> bool:
        """Step ``step`` measures the update norms."""
        return due(step, self.update_every)

    def weights(self, step: int) -> bool:
        """Step ``step`` measures the weight norms (their period, and every update-sampled step)."""
        return due(step, self.weight_every) or due(step, self.update_every)

    def activations(self, step: int) -> bool:
        """Step ``step`` samples its first forward (activation statistics, output gradients)."""
        return due(step, self.activation_every)

    def without_activations(self) -> Schedule:
        """The same schedule with the activation statistics off."""
        return dataclasses.replace(self, activation_every=0)


__all__ = ["ACTIVATION_EVERY", "DEAD_WINDOW", "FLUSH_EVERY", "Schedule", "UPDATE_EVERY", "WEIGHT_EVERY", "due"]
