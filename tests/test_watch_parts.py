"""The parts of the training monitor on their own: schedule, ring columns, ring block, loss pairing."""

from __future__ import annotations

import math

import pytest
import torch

from graddoctor.errors import InputError
from graddoctor.measure.monitor.pairing import LossSlot
from graddoctor.measure.monitor.ring import Columns, Ring, Row
from graddoctor.measure.monitor.schedule import Schedule, due
from graddoctor.measure.stats import segment_index


def test_due_is_dense_early_then_periodic():
    assert [s for s in range(1, 40) if due(s, 16)] == [1, 2, 4, 8, 17, 33]
    assert [s for s in range(1, 5) if due(s, 1)] == [1, 2, 3, 4]
    assert not any(due(s, 0) for s in range(1, 10))


def test_schedule_checks_its_periods():
    with pytest.raises(InputError, match="flush_every must be a positive int"):
        Schedule(flush_every=0)
    with pytest.raises(InputError, match="activation_every must be an int >= 0"):
        Schedule(activation_every=-1)
    s = Schedule(activation_every=5).without_activations()
    assert s.activation_every == 0 and not s.activations(1) and s.updates(1)


def test_columns_partition_the_block_by_name():
    cols = Columns(3)
    taken = []
    for name in Columns.PER_LAYER + Columns.PER_STEP:
        at = cols[name]
        taken += list(range(cols.width))[at] if isinstance(at, slice) else [at]
    assert sorted(taken) == list(range(cols.width)) == list(range(5 * 3 + 2))
    assert cols.shard_summed.tolist() == [True] * 15 + [False] * 2
    row = cols.split([float(i) for i in range(cols.width)])
    assert row["weight_norm"] == [9.0, 10.0, 11.0] and row["loss"] == 15.0


def test_ring_block_matches_per_layer_oracle():
    g = torch.Generator().manual_seed(0)
    params = [torch.randn(5, 3, generator=g), torch.randn(3, generator=g)] + [torch.randn(4, generator=g)
                                                                              for _ in range(5)]
    sizes = [2, 0, 5]  # layer 1 owns nothing
    ring = Ring(params, segment_index(sizes), 3, capacity=4)
    cols = ring.columns
    grads = [[torch.randn(p.shape, generator=g) for p in params] for _ in range(3)]
    grads[1][0] = None  # a missing gradient in step 2
    for step, gs in enumerate(grads, 1):
        row = ring.append(step)
        ring.write([gs[i] for i in ring.norms.order])
        row.loss = torch.tensor(float(step))
    ring.rows[2].scale = torch.tensor(2.0, dtype=torch.float64)
    block = ring.flush_block(3, count_nonfinite=True)
    owner = segment_index(sizes).tolist()
    for i, gs in enumerate(grads):
        scale = 2.0 if i == 2 else 1.0
        want = [math.sqrt(sum(float(gs[j].norm()) ** 2 for j in range(len(gs)) if owner[j] == layer
                              and gs[j] is not None)) / scale for layer in range(3)]
        assert block[i, cols["grad_norm"]].tolist() == pytest.approx(want, rel=1e-6)
        present = [sum(1 for j in range(len(gs)) if owner[j] == layer and gs[j] is not None) for layer in range(3)]
        assert block[i, cols["present"]].tolist() == present
        assert block[i, cols["loss"]].item() == i + 1
        assert block[i, cols["nonfinite"]].tolist() == [0.0, 0.0, 0.0]
    ring.append(4)
    ring.write([None if i == 0 else torch.full(params[i].shape, math.inf) for i in ring.norms.order])
    ring.drop(3)  # the fourth row moves to the front
    assert [r.step for r in ring.rows] == [4]
    assert ring.flush_block(1, count_nonfinite=True)[0, cols["nonfinite"]].tolist() == [1.0, 0.0, 5.0]


def test_loss_slot_pairs_losses_with_rows_in_either_order():
    slot = LossSlot()
    first = Row(1)
    slot.new_row(first)
    slot.add(torch.tensor(2.0))  # after its row
    assert first.loss.item() == 2.0 and slot.row is None
    for v in (1.0, 2.0, 6.0):  # before the next row: averaged
        slot.add(torch.tensor(v))
    second = Row(2)
    slot.new_row(second)
    assert second.loss.item() == 3.0 and slot.pending is None
    third = Row(3)
    slot.new_row(third)
    slot.flushed(3)  # flushed before its loss came: the loss waits for the next row
    slot.add(torch.tensor(5.0))
    assert third.loss is None and slot.pending[1] == 1
