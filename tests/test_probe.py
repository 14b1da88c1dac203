"""The init probe against plain-autograd oracles, and its leave-no-trace contract."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from graddoctor.errors import ModelCallError
from graddoctor.measure.probe import probe


def _projection(y: torch.Tensor, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(y.shape, generator=gen, dtype=y.dtype)


def _mlp(inplace: bool = False) -> nn.Sequential:
    torch.manual_seed(1)
    return nn.Sequential(nn.Linear(6, 8), nn.ReLU(inplace=inplace), nn.Linear(8, 8), nn.Tanh(),
                         nn.Linear(8, 3))


@pytest.mark.parametrize("inplace", [False, True])
def test_grad_rms_and_variance_match_autograd(inplace: bool):
    net = _mlp(inplace)
    x = torch.randn(5, 6)
    p = probe(net, x, jacobian_k=0)
    # oracle: the pre-activations with retain_grad, same projection loss
    h0 = net[0](x)
    h0.retain_grad()
    h1 = net[2](F.relu(h0))
    h1.retain_grad()
    y = net[4](torch.tanh(h1))
    y.retain_grad()
    (y * _projection(y)).mean().backward()
    hs = [h0, h1, y]
    assert p.layers == ["0", "2", "4"] and p.loss_source == "projection"
    for got, h in zip(p.grad_rms, hs):
        assert got == pytest.approx(float(h.grad.pow(2).mean().sqrt()), rel=1e-5)
    for got, h in zip(p.act_var, hs):
        assert got == pytest.approx(float(h.detach().double().var(unbiased=False)), rel=1e-5)


def test_time_grad_matches_autograd_and_batch_first():
    torch.manual_seed(0)

    class Seq(nn.Module):
        def __init__(self, batch_first: bool) -> None:
            super().__init__()
            self.rnn = nn.RNN(3, 8, batch_first=batch_first)
            self.head = nn.Linear(8, 1)
            self.bf = batch_first

        def forward(self, x):
            out, _ = self.rnn(x)
            return self.head(out[:, -1] if self.bf else out[-1])

    for bf in (True, False):
        net = Seq(bf)
        x = torch.randn(4, 12, 3) if bf else torch.randn(12, 4, 3)
        p = probe(net, x, jacobian_k=0)
        xr = x.clone().requires_grad_(True)
        y = net(xr)
        (y * _projection(y)).mean().backward()
        g = xr.grad if bf else xr.grad.transpose(0, 1)
        expected = g.reshape(4, 12, -1).transpose(0, 1).reshape(12, -1).norm(dim=1)
        assert p.time_axis == (1 if bf else 0)
        assert torch.allclose(torch.tensor(p.time_grad, dtype=torch.float64), expected.double(), rtol=1e-5)


def test_jacobian_sketch_matches_the_exact_spectrum():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 6), nn.Tanh(), nn.Linear(6, 4))
    with torch.no_grad():
        net[2].weight[0] *= 10  # make the spectrum uneven
    x = torch.randn(1, 6)
    p = probe(net, x, jacobian_k=600)
    jac = torch.autograd.functional.jacobian(net, x).reshape(4, 6).double()
    s2 = torch.linalg.svdvals(jac) ** 2
    m = 4
    gain = math.sqrt(float(s2.sum()) / m)
    spread = m * float((s2**2).sum()) / float(s2.sum()) ** 2
    assert p.jacobian["gain"] == pytest.approx(gain, rel=0.1)
    assert p.jacobian["spread"] == pytest.approx(spread, rel=0.25)
    assert spread > 2  # the check above could fail: the spectrum is far from flat


def test_model_loss_target_and_loss_fn():
    class HF(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(4, 3)

        def forward(self, x, labels=None):
            logits = self.fc(x)
            loss = F.cross_entropy(logits, labels) if labels is not None else None
            return {"loss": loss, "logits": logits}

    net = HF()
    x, y = torch.randn(5, 4), torch.randint(0, 3, (5,))
    assert probe(net, {"x": x, "labels": y}).loss_source == "model"
    assert probe(net, {"x": x}).loss_source == "projection"
    plain = nn.Linear(4, 3)
    p = probe(plain, x, target=y)
    assert p.loss_source == "cross_entropy"
    assert p.loss == pytest.approx(float(F.cross_entropy(plain(x), y).detach()))
    assert probe(plain, x, target=torch.randn(5, 3)).loss_source == "mse"
    p = probe(plain, x, target=y, loss_fn=lambda o, t: F.cross_entropy(o, t) * 2)
    assert p.loss_source == "loss_fn"
    assert p.loss == pytest.approx(2 * float(F.cross_entropy(plain(x), y).detach()))


def _no_hooks(model: nn.Module) -> bool:
    return all(not m._forward_hooks and not m._forward_pre_hooks and not m._backward_hooks
               for m in model.modules())


@pytest.mark.parametrize("train", [True, False])
def test_leaves_no_trace(train: bool):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Dropout(0.5), nn.Linear(8, 2))
    net.train(train)
    net[0].weight.grad = torch.full_like(net[0].weight, 3.0)
    grad_obj = net[0].weight.grad
    before = {k: v.clone() for k, v in net.state_dict().items()}
    x = torch.randn(6, 4)
    torch.manual_seed(42)
    expected = torch.rand(3)
    torch.manual_seed(42)
    probe(net, x)  # dropout draws from the RNG
    assert torch.equal(torch.rand(3), expected)  # RNG restored
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())  # params + BN stats
    assert net[0].weight.grad is grad_obj and torch.equal(grad_obj, torch.full_like(grad_obj, 3.0))
    assert net[4].weight.grad is None
    assert all(m.training == train for m in net.modules())
    assert _no_hooks(net)


def test_hooks_removed_when_forward_raises():
    net = nn.Sequential(nn.Linear(4, 4), nn.Linear(5, 2))
    with pytest.raises(ModelCallError):
        probe(net, torch.randn(2, 4))
    assert _no_hooks(net)


def test_inplace_on_input_and_float_masks():
    class Inplace(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(4, 2)

        def forward(self, x, attention_mask=None):
            x.mul_(2)  # in place on the input: must still work, gradient still measured
            return self.fc(x * attention_mask[:, None])

    x = torch.randn(3, 4)
    before = x.clone()
    mask = torch.ones(3)
    p = probe(Inplace(), {"attention_mask": mask, "x": x})
    assert torch.equal(x, before) and torch.equal(mask, torch.ones(3))  # the user's tensors untouched
    assert p.jacobian is not None and p.jacobian["outputs"] == 6
    assert p.grad_rms[0] > 0


def test_layers_off_the_loss_path_are_listed_not_profiled():
    class TwoHeads(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = nn.Linear(4, 8)
            self.main = nn.Linear(8, 16)
            self.aux = nn.Linear(8, 1)

        def forward(self, x):
            h = torch.relu(self.body(x))
            return self.main(h), self.aux(h).detach()  # the probe reads the largest output

    p = probe(TwoHeads(), torch.randn(3, 4))
    assert p.layers == ["body", "main"] and p.off_path == ["aux"]
    assert all(g > 0 for g in p.grad_rms)


def test_works_under_no_grad_and_with_token_inputs():
    emb = nn.Sequential(nn.Embedding(10, 8), nn.Linear(8, 8), nn.GELU(), nn.Linear(8, 10))
    with torch.no_grad():
        p = probe(emb, torch.randint(0, 10, (3, 9)))
    assert p.layers == ["1", "3"]
    assert p.time_axis == 1 and len(p.time_grad) == 9  # through the embedding's output
    assert p.jacobian is not None and p.jacobian["gain"] > 0


def test_jacobian_sketch_stops_at_an_exactly_zero_projection():
    torch.manual_seed(0)
    deep = nn.Sequential(*[m for _ in range(300) for m in (nn.Linear(8, 8), nn.Sigmoid())], nn.Linear(8, 2))
    x = torch.randn(4, 8)
    oracle = torch.autograd.functional.vjp(deep, x, torch.randn(4, 2))[1]
    assert not oracle.any()  # plain autograd: J^T u underflows to exact zeros in float32
    p = probe(deep, x, jacobian_k=4)
    assert p.jacobian["underflow"] and p.jacobian["k"] == 1 and p.jacobian["gain"] == 0.0
    shallow = nn.Sequential(nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 2))
    q = probe(shallow, x, jacobian_k=4)
    assert q.jacobian["k"] == 4 and "underflow" not in q.jacobian and q.jacobian["gain"] > 0
