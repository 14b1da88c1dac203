"""Healthy tiny BERTs that looked broken to watch / autofix (a new-user trial, 2026-11-30).

- Embeddings and layer 0 frozen, AdamW 5e-4: the query/key projections' gradient (through
  the ~uniform attention scores at init) is orders below the value path's; it was read as
  "vanishing-gradient 3.9 orders" (an error) and autofix re-drew layer 1 and the pooler.
- AdamW 1e-4, no warm-up, a task whose loss sits at ln 2 for ~100 steps: read as
  "post-ln-no-warmup" (error); autofix restarted it twice, and its two warm-up ramps broke the
  user's ``opt.step()`` ("OrderedDict mutated during iteration").
"""

from __future__ import annotations

import warnings

import pytest
import torch

import graddoctor as gd

transformers = pytest.importorskip("transformers")


def _majority(n: int, g: torch.Generator, T: int = 16, vocab: int = 30) -> tuple[torch.Tensor, torch.Tensor]:
    """Token 2 then random tokens with a few 3s and 4s planted; label: more 3s than 4s."""
    x = torch.randint(5, vocab, (n, T), generator=g)
    k3 = torch.randint(0, 6, (n,), generator=g)
    k4 = torch.randint(0, 6, (n,), generator=g)
    k4 = torch.where(k4 == k3, (k4 + 1) % 6, k4)
    for i in range(n):
        pos = torch.randperm(T - 1, generator=g)[: int(k3[i] + k4[i])] + 1
        x[i, pos[: int(k3[i])]] = 3
        x[i, pos[int(k3[i]):]] = 4
    x[:, 0] = 2
    return x, (k3 > k4).long()


def _run(lr: float, steps: int, freeze: bool) -> tuple[gd.Watcher, list[float]]:
    torch.manual_seed(0)
    x, y = _majority(3000, torch.Generator().manual_seed(0))
    cfg = transformers.BertConfig(vocab_size=30, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                                  intermediate_size=256, max_position_embeddings=32, num_labels=2)
    model = transformers.BertForSequenceClassification(cfg)
    if freeze:
        for p in [*model.bert.embeddings.parameters(), *model.bert.encoder.layer[0].parameters()]:
            p.requires_grad_(False)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr, weight_decay=0.01)
    g = torch.Generator().manual_seed(1)
    losses = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with gd.watch(model, optimizer=opt, example_inputs=x[:32], autofix=True) as w:
            for _ in range(steps):
                idx = torch.randint(0, len(x), (32,), generator=g)
                loss = torch.nn.functional.cross_entropy(model(x[idx]).logits, y[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
                w.step(loss)
                losses.append(loss.item())
    return w, losses


@pytest.mark.slow
def test_frozen_bottom_bert_fine_tune_is_left_alone():
    w, losses = _run(5e-4, 80, freeze=True)
    assert w.fixes == []
    assert "vanishing-gradient" not in {f.code for f in w.report().findings}
    assert sum(losses[-10:]) / 10 < 0.6  # it learns (ln 2 = 0.69 at the start)


@pytest.mark.slow
def test_bert_on_a_task_plateau_without_warmup_is_left_alone():
    w, losses = _run(1e-4, 160, freeze=False)
    assert w.fixes == [] and not [f for f in w.report().findings if f.severity == "error"]
    assert sum(losses[:10]) / 10 > 0.68 and sum(losses[-10:]) / 10 < 0.5  # the plateau, then it learns
