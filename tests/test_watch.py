"""watch: recorded per-layer gradient norms against p.grad.norm() computed by hand."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

import graddoctor as gd
from graddoctor.errors import InputError
from graddoctor.runlog import read_run

# ---------------------------------------------------------------- models


class LSTMNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(3, 8, batch_first=True)
        self.head = nn.Linear(8, 2)

    def forward(self, x):
        out, _ = self.lstm(x)
        return self.head(out[:, -1])


class TinyTransformer(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(11, 16)
        layer = nn.TransformerEncoderLayer(16, 2, dim_feedforward=32, dropout=0.0, batch_first=True)
        self.enc = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        self.head = nn.Linear(16, 11)

    def forward(self, tokens):
        return self.head(self.enc(self.emb(tokens))).mean(1)


def mlp():
    return nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, 3))


def cnn():
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                         nn.Conv2d(4, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Linear(4, 3))


MODELS = {
    "mlp": (mlp, lambda g: torch.randn(8, 6, generator=g)),
    "cnn": (cnn, lambda g: torch.randn(4, 3, 8, 8, generator=g)),
    "lstm": (LSTMNet, lambda g: torch.randn(4, 5, 3, generator=g)),
    "transformer": (TinyTransformer, lambda g: torch.randint(0, 11, (4, 6), generator=g)),
}


def loss_of(out):
    return out.float().pow(2).mean()


def hand_norms(model, meta):
    """Oracle: for each recorded layer, sqrt(sum p.grad.norm()^2) over the module's own
    parameters (a parameter shared by two modules counts under the first listed), None if no grad."""
    mods = dict(model.named_modules())
    seen, out = set(), {}
    for layer in meta["layers"]:
        ps = [p for p in mods[layer["name"]].parameters(recurse=False) if id(p) not in seen]
        seen.update(id(p) for p in ps)
        gs = [p.grad for p in ps if p.grad is not None]
        out[layer["name"]] = math.sqrt(sum(g.double().norm().item() ** 2 for g in gs)) if gs else None
    return out


def assert_norms(recorded, oracle, rtol=1e-5):
    assert set(recorded) == set(oracle)
    for name, want in oracle.items():
        got = recorded[name]
        if want is None:
            assert got is None, name
        else:
            assert got == pytest.approx(want, rel=rtol, abs=1e-12), name


def train(model, make_x, steps=3, accum=1, opt=None, **watch_kw):
    """Train a few steps under watch; returns (records, oracle norms per step, watcher)."""
    g = torch.Generator().manual_seed(0)
    opt = opt or torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    oracle = []
    with gd.watch(model, opt, **watch_kw) as w:
        for _ in range(steps):
            for _ in range(accum):
                (loss_of(model(make_x(g))) / accum).backward()
            oracle.append(hand_norms(model, w._meta))
            opt.step()
            opt.zero_grad()
            w.step(loss_of(model(make_x(g))).detach())
    meta, steps_ = w.records()
    return (meta, steps_), oracle, w


# ---------------------------------------------------------------- oracle tests


@pytest.mark.parametrize("name", sorted(MODELS))
def test_grad_norms_equal_hand_norms(name):
    torch.manual_seed(0)
    build, make_x = MODELS[name]
    model = build()
    (meta, steps), oracle, _ = train(model, make_x, steps=3)
    assert len(steps) == 3 and [s["step"] for s in steps] == [1, 2, 3]
    assert {ly["name"] for ly in meta["layers"]} == set(oracle[0])
    n_params = sum(ly["numel"] for ly in meta["layers"])
    assert n_params == sum(p.numel() for p in model.parameters())
    for rec, want in zip(steps, oracle):
        assert_norms(rec["grad_norm"], want)
        assert all(v == 0 for v in rec["nonfinite"].values())
        assert rec["loss"] is not None and math.isfinite(rec["loss"])


def test_transformer_layers_in_execution_order():
    torch.manual_seed(0)
    (meta, _), _, _ = train(TinyTransformer(), MODELS["transformer"][1], steps=1)
    names = [ly["name"] for ly in meta["layers"]]
    assert names[0] == "emb" and names[-1] == "head"
    assert names.index("enc.layers.0.self_attn") < names.index("enc.layers.0.self_attn.out_proj") \
        < names.index("enc.layers.1.self_attn")


def test_gradient_accumulation_four_micro_batches():
    torch.manual_seed(0)
    model = mlp()
    (meta, steps), oracle, _ = train(model, MODELS["mlp"][1], steps=2, accum=4, activation_every=1)
    assert len(steps) == 2  # one record per optimizer step, not per micro-batch
    for rec, want in zip(steps, oracle):
        assert_norms(rec["grad_norm"], want)
    # the accumulated gradient differs from one micro-batch's: the oracle is really the sum
    assert "act" in steps[0] and "act" in steps[1]


def test_cpu_bf16_autocast():
    torch.manual_seed(0)
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    g = torch.Generator().manual_seed(0)
    oracle = []
    with gd.watch(model, opt) as w:
        for _ in range(3):
            with torch.autocast("cpu", dtype=torch.bfloat16):
                out = model(torch.randn(8, 6, generator=g))
            assert out.dtype == torch.bfloat16
            loss_of(out).backward()
            oracle.append(hand_norms(model, w._meta))
            opt.step()
            opt.zero_grad()
            w.step()
    for rec, want in zip(w.records()[1], oracle):
        assert_norms(rec["grad_norm"], want)


def test_bf16_parameters():
    torch.manual_seed(0)
    model = mlp().to(torch.bfloat16)
    (meta, steps), oracle, _ = train(model, lambda g: torch.randn(8, 6, generator=g).bfloat16(), steps=2)
    for rec, want in zip(steps, oracle):  # norms accumulated in float32 from bf16 grads
        assert_norms(rec["grad_norm"], want, rtol=1e-5)


def test_grad_scaler_cpu_norms_are_unscaled_and_skips_recorded():
    torch.manual_seed(0)
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**12)
    g = torch.Generator().manual_seed(0)
    oracle, scaled = [], []
    with gd.watch(model, opt, scaler=scaler) as w:
        for i in range(4):
            loss = loss_of(model(torch.randn(8, 6, generator=g)))
            if i == 2:
                loss = loss * math.inf  # inf gradients: the scaler must skip this step
            scaler.scale(loss).backward()
            scaled.append(hand_norms(model, w._meta))
            scaler.step(opt)  # unscales in place, then calls opt.step() unless inf/nan found
            oracle.append(hand_norms(model, w._meta))
            scaler.update()
            opt.zero_grad()
            w.step(loss.detach())
    steps = w.records()[1]
    assert [s["skipped"] for s in steps] == [False, False, True, False]
    assert "grad_norm" not in steps[2]  # a skipped step is not an explosion
    for i in (0, 1, 3):
        assert_norms(steps[i]["grad_norm"], oracle[i])
        some = next(n for n, v in oracle[i].items() if v)
        assert scaled[i][some] == pytest.approx(oracle[i][some] * 2.0**12 / 2 ** (i == 3), rel=1e-5)
    assert math.isinf(steps[2]["loss"])


def test_frozen_layers_are_null_not_vanishing():
    torch.manual_seed(0)
    model = mlp()
    for p in model[0].parameters():
        p.requires_grad_(False)
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.05)
    (meta, steps), oracle, _ = train(model, MODELS["mlp"][1], steps=2, opt=opt)
    first = meta["layers"][0]
    assert first["name"] == "0" and first["trainable"] is False
    assert all(ly["trainable"] for ly in meta["layers"][1:])
    for rec, want in zip(steps, oracle):
        assert rec["grad_norm"]["0"] is None
        assert_norms(rec["grad_norm"], want)
    assert "0" not in steps[0]["update_norm"] and steps[0]["update_norm"]["2"] > 0


class SharedUnused(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(10, 8)
        self.block = nn.Linear(8, 8)
        self.unused = nn.Linear(8, 8)
        self.out = nn.Linear(8, 10, bias=False)
        self.out.weight = self.emb.weight  # tied weights

    def forward(self, t):
        h = self.emb(t)
        h = torch.relu(self.block(h))
        h = torch.relu(self.block(h))  # the same module called twice
        return self.out(h)


def test_shared_tied_and_unused_parameters():
    torch.manual_seed(0)
    model = SharedUnused()
    (meta, steps), oracle, _ = train(model, lambda g: torch.randint(0, 10, (4, 5), generator=g), steps=2)
    names = [ly["name"] for ly in meta["layers"]]
    assert names[:2] == ["emb", "block"] and "unused" in names
    assert sum(ly["numel"] for ly in meta["layers"]) == sum(p.numel() for p in model.parameters())
    for rec, want in zip(steps, oracle):
        assert rec["grad_norm"]["unused"] is None
        assert want["emb"] is not None  # the tied weight's gradient from both uses
        assert_norms(rec["grad_norm"], want)


def test_update_norm_is_exact_and_sampled():
    torch.manual_seed(0)
    model = mlp()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    g = torch.Generator().manual_seed(0)
    want = []
    with gd.watch(model, opt, update_every=2) as w:
        for _ in range(4):
            loss_of(model(torch.randn(8, 6, generator=g))).backward()
            before = [p.detach().clone() for p in model.parameters()]
            opt.step()
            opt.zero_grad()
            w.step()
            want.append([(p.detach() - b).norm().item() for p, b in zip(model.parameters(), before)])
    steps = w.records()[1]
    assert ["update_norm" in s for s in steps] == [True, False, True, False]
    for i in (0, 2):
        # layer "0" owns parameters 0 and 1 (weight, bias)
        assert steps[i]["update_norm"]["0"] == pytest.approx(math.hypot(want[i][0], want[i][1]), rel=1e-4)
        assert steps[i]["update_ratio"]["0"] == pytest.approx(
            steps[i]["update_norm"]["0"] / steps[i]["weight_norm"]["0"])
    assert steps[2]["weight_step"] == 3  # measured with the update



def test_weight_norm_written_on_measured_steps_only_and_carried_when_read(tmp_path):
    torch.manual_seed(0)
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    want = []  # layer "0" (weight, bias) before each step: measured in the step pre-hook
    with gd.watch(model, opt, tmp_path, weight_every=3, update_every=1000) as w:
        for _ in range(5):
            loss_of(model(torch.randn(8, 6))).backward()
            want.append(math.hypot(model[0].weight.norm().item(), model[0].bias.norm().item()))
            opt.step()
            opt.zero_grad()
            w.step()
    lines = [json.loads(x) for x in (tmp_path / "watch.jsonl").read_text().splitlines()[1:]]
    # weight_every=3: steps 1, 4, ... and 2 (powers of two within the first period); the update
    # period adds its own early steps 1, 2, 4, 8, ... (1000: none beyond those here)
    assert ["weight_norm" in x for x in lines] == [True, True, False, True, False]
    assert all("weight_step" not in x for x in lines)
    steps = read_run(tmp_path)[1]
    assert [s["weight_step"] for s in steps] == [1, 2, 2, 4, 4]
    assert [s["weight_norm"]["0"] for s in steps] == pytest.approx(
        [want[0], want[1], want[1], want[3], want[3]], rel=1e-6)
    assert [s["weight_step"] for s in w.records()[1]] == [1, 2, 2, 4, 4]


def test_without_optimizer_step_marks_steps():
    torch.manual_seed(0)
    model = mlp()
    g = torch.Generator().manual_seed(0)
    oracle = []
    with gd.watch(model, update_every=1) as w:
        for _ in range(3):
            loss = loss_of(model(torch.randn(8, 6, generator=g)))
            loss.backward()
            oracle.append(hand_norms(model, w._meta))
            with torch.no_grad():
                for p in model.parameters():
                    p -= 0.1 * p.grad
            w.step(loss)
            model.zero_grad()
    steps = w.records()[1]
    assert len(steps) == 3
    for rec, want in zip(steps, oracle):
        assert_norms(rec["grad_norm"], want)
        assert rec["update_norm"]["0"] == pytest.approx(0.1 * want["0"], rel=1e-4)


def test_nonfinite_counted():
    model = nn.Sequential(nn.Linear(3, 3), nn.Linear(3, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    with gd.watch(model, opt) as w:
        model(torch.ones(2, 3)).sum().backward()
        model[0].weight.grad[0, :2] = math.nan
        model[0].bias.grad[1] = math.inf
        opt.step()
        w.step()
    rec = w.records()[1][0]
    assert rec["nonfinite"] == {"0": 3, "1": 0}
    assert math.isnan(rec["grad_norm"]["0"]) and math.isfinite(rec["grad_norm"]["1"])


def test_activation_stats_against_hand_computation():
    torch.manual_seed(0)

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.act, self.b = nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 3)

        def forward(self, x):
            h = self.act(self.a(x))
            return torch.sigmoid(self.b(h) * 5)

    net = Net()
    with torch.no_grad():
        net.a.bias[:2] = -100.0  # two dead units out of six
    x = torch.randn(32, 4)
    opt = torch.optim.SGD(net.parameters(), lr=0.0)
    with gd.watch(net, opt, activation_every=1, example_inputs=x) as w:
        for _ in range(2):
            net(x).sum().backward()
            opt.step()
            opt.zero_grad()
            w.step()
        with torch.no_grad():
            net(x)  # a no-grad (eval) forward is not sampled
    meta, steps = w.records()
    assert [s["name"] for s in meta["activations"]] == ["act", "model/sigmoid#0"]
    h = torch.relu(net.a(x))
    y = torch.sigmoid(net.b(h) * 5)
    a = steps[1]["act"]["act"]
    assert a["mean"] == pytest.approx(h.mean().item(), rel=1e-5)
    assert a["std"] == pytest.approx(h.std(unbiased=False).item(), rel=1e-4)
    assert a["zero_frac"] == pytest.approx((h == 0).float().mean().item())
    assert a["dead_frac"] == pytest.approx(2 / 6)
    s = steps[1]["act"]["model/sigmoid#0"]
    assert s["sat_frac"] == pytest.approx(((y < 0.01) | (y > 0.99)).float().mean().item())
    assert "dead_frac" not in s
    assert len(steps) == 2


def test_default_activation_sampling_period():
    torch.manual_seed(0)
    model = mlp()
    (meta, steps), _, w = train(model, MODELS["mlp"][1], steps=3, activation_every=2)
    assert ["act" in s for s in steps] == [True, False, True]


def test_output_grads_opt_in():
    torch.manual_seed(0)
    model = mlp()
    x = torch.randn(8, 6)
    outs = {}

    def keep(i):
        def hook(m, a, o):
            if o.requires_grad:
                o.retain_grad()
                outs[i] = o
        return hook

    hs = [model[i].register_forward_hook(keep(i)) for i in (0, 2, 4)]
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    with gd.watch(model, opt, output_grads=True, activation_every=1) as w:
        loss_of(model(x)).backward()
        opt.step()
        w.step()
    for h in hs:
        h.remove()
    got = w.records()[1][0]["out_grad_norm"]
    for i in (0, 2, 4):
        assert got[str(i)] == pytest.approx(outs[i].grad.norm().item(), rel=1e-5)


def test_jsonl_log_matches_memory(tmp_path):
    torch.manual_seed(0)
    model = mlp()
    (meta, steps), _, w = train(model, MODELS["mlp"][1], steps=5, log_dir=tmp_path, flush_every=2)
    meta2, steps2 = read_run(tmp_path)
    assert meta2["run_id"] == meta["run_id"] and meta2["layers"] == meta["layers"]
    assert steps2 == steps
    lines = (tmp_path / "watch.jsonl").read_text().splitlines()
    assert len(lines) == 1 + 5  # one meta line, one line per step


def test_report_carries_series():
    torch.manual_seed(0)
    (meta, steps), _, w = train(mlp(), MODELS["mlp"][1], steps=2)
    r = w.report()
    assert r.source == "watch" and r.data["steps"] == steps and r.data["meta"]["layers"] == meta["layers"]
    r.to_json()


def test_lazy_map_fallback_without_forward():
    model = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 1))
    w = gd.watch(model)  # no example inputs, no forward before the first step
    (model[1](model[0].weight)).sum().backward()  # calls submodules only, not the root
    w.step()
    w.detach()
    meta, steps = w.records()
    assert meta["config"]["mapped"] is False and [ly["name"] for ly in meta["layers"]] == ["0", "1"]
    assert steps[0]["grad_norm"]["1"] is not None


def test_first_optimizer_step_before_any_forward_is_recorded():
    model = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with gd.watch(model, opt) as w:
        (model[1](model[0].weight)).sum().backward()  # calls submodules only, not the root
        opt.step()
        w.step(torch.tensor(1.0))
    meta, steps = w.records()
    assert w.failed is None and meta["config"]["mapped"] is False
    assert [s["step"] for s in steps] == [1] and steps[0]["loss"] == 1.0 and steps[0]["grad_norm"]["1"] > 0


def test_bad_input_errors():
    with pytest.raises(gd.GraddoctorError, match="nn.Module"):
        gd.watch("not a model")
    with pytest.raises(gd.GraddoctorError, match="flush_every"):
        gd.watch(nn.Linear(2, 2), flush_every=0)
    w = gd.watch(nn.Linear(2, 2))
    w.detach()
    with pytest.raises(gd.GraddoctorError, match="detached"):
        w.step()


def test_a_misspelt_option_names_gd_watch_and_the_close_valid_ones():
    net = nn.Linear(2, 2)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    with pytest.raises(InputError) as err:
        gd.watch(net, opt, flushevery=3)
    assert str(err.value) == "gd.watch: unknown argument 'flushevery' (did you mean 'flush_every'?)"
    with pytest.raises(InputError, match=r"unknown argument 'zzz' \(options: activation_every, autofix,"):
        gd.watch(net, opt, zzz=1)
    with pytest.raises(InputError, match="'warmup' is an autofix option - pass autofix=True"):
        gd.watch(net, opt, warmup=5)
    with pytest.raises(InputError, match="did you mean 'warmup'"):  # autofix's own options count
        gd.watch(net, opt, autofix=True, warmpu=5)
    gd.watch(net, opt, autofix=True, warmup=5, flush_every=3).detach()  # valid ones still pass


def test_a_model_without_parameters_warns_once_at_attach_and_training_goes_on():
    net = nn.Sequential(nn.ReLU(), nn.Flatten())
    with pytest.warns(UserWarning, match=r"the model \(Sequential\) has no parameters, so there is nothing "
                                         "to watch") as caught:
        w = gd.watch(net, example_inputs=torch.randn(4, 3))
    assert len([c for c in caught if "no parameters" in str(c.message)]) == 1
    with w:
        for _ in range(3):
            net(torch.randn(4, 3))
            w.step(torch.tensor(1.0))
    assert w.failed is None


def test_example_inputs_that_do_not_fit_warn_once_per_run_not_once_per_rank():
    import warnings

    from graddoctor.diagnose.watching import Watcher

    net = nn.Linear(3, 1)
    for rank, expected in ((0, 1), (1, 0)):  # a distributed run: every rank maps, rank 0 warns
        w = Watcher(net, example_inputs=torch.randn(4, 7))
        w.rank = rank
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            w.attach()
            w.detach()
        assert sum("ModelMap failed" in str(c.message) for c in caught) == expected, rank


def test_gd_watch_is_the_function_after_the_submodule_import():
    import importlib

    import graddoctor
    from graddoctor.diagnose.watching import Watcher, watch

    # importing the modules behind the verbs must not rebind gd.watch to a module
    for name in ("graddoctor.measure.monitor.watcher", "graddoctor.diagnose.watching",
                 "graddoctor.diagnose.checkup", "graddoctor.fix.repairing"):
        importlib.import_module(name)
    assert graddoctor.watch is watch and graddoctor.Watcher is Watcher
    assert callable(graddoctor.check) and callable(graddoctor.repair)
    w = graddoctor.watch(nn.Linear(2, 2))
    assert isinstance(w, gd.Watcher) and w.attached
    w.detach()


def test_fused_optimizer_amp_path_unscales_and_flags_skips():
    torch.manual_seed(0)
    model = nn.Linear(3, 2)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)
    if not getattr(opt, "_step_supports_amp_scaling", False):
        pytest.skip("fused Adam without AMP scaling support in this torch")
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
    want = []
    with gd.watch(model, opt, scaler=scaler) as w:
        for i in range(3):
            loss = model(torch.randn(4, 3)).sum() * (math.inf if i == 1 else 1.0)
            scaler.scale(loss).backward()
            scale = scaler.get_scale()
            # the fused optimizer unscales inside its kernel: p.grad is still scaled here
            want.append(hand_norms(model, w._meta)[""] / scale)
            scaler.step(opt)
            scaler.update()
            opt.zero_grad()
            w.step(loss)
    steps = w.records()[1]
    assert [s["skipped"] for s in steps] == [False, True, False]
    for i in (0, 2):
        assert steps[i]["grad_norm"][""] == pytest.approx(want[i], rel=1e-5)


class ConvActs(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(3, 4, 3, padding=1), nn.Conv2d(4, 4, 3, padding=1)
        self.act, self.leaky, self.head = nn.ReLU(), nn.LeakyReLU(0.1), nn.Linear(4, 2)

    def forward(self, x):
        h = self.act(self.conv1(x))
        h = self.act(self.conv2(h))  # the same ReLU module: one site, two calls
        return self.head(self.leaky(h - 0.5).mean((2, 3)))


def test_activation_stats_conv_channels_shared_site_and_leaky():
    torch.manual_seed(0)
    net = ConvActs()
    with torch.no_grad():
        net.conv1.bias[0] = -100.0  # channel 0 dead in the first call only
        net.conv2.bias[3] = -100.0  # channel 3 dead in the second call only
        net.conv2.bias[1] = -100.0
        net.conv1.bias[1] = -100.0  # channel 1 dead in both calls: the only dead unit
    outs = {"act": [], "leaky": []}
    hooks = [getattr(net, n).register_forward_hook(lambda m, a, o, n=n: outs[n].append(o.detach()))
             for n in outs]
    x = torch.randn(4, 3, 6, 6)
    opt = torch.optim.SGD(net.parameters(), lr=0.0)
    with gd.watch(net, opt, activation_every=1, example_inputs=x) as w:
        outs["act"].clear()
        outs["leaky"].clear()
        net(x).sum().backward()
        opt.step()
        w.step()
    for h in hooks:
        h.remove()
    got = w.records()[1][0]["act"]
    a = torch.cat([o.reshape(-1) for o in outs["act"]])
    assert got["act"]["mean"] == pytest.approx(a.mean().item(), rel=1e-5)
    assert got["act"]["std"] == pytest.approx(a.std(unbiased=False).item(), rel=1e-4)
    assert got["act"]["zero_frac"] == pytest.approx((a == 0).float().mean().item())
    active = torch.stack([(o > 0).any(dim=(0, 2, 3)) for o in outs["act"]]).any(0)
    assert active.tolist() == [True, False, True, True]
    assert got["act"]["dead_frac"] == pytest.approx(0.25)
    lk = outs["leaky"][0]
    assert got["leaky"]["mean"] == pytest.approx(lk.mean().item(), rel=1e-5, abs=1e-7)
    assert got["leaky"]["dead_frac"] == pytest.approx(
        (~(lk > 0).any(dim=(0, 2, 3))).float().mean().item())


def test_dead_window_spans_the_last_samples():
    lin = nn.Linear(1, 2, bias=False)
    with torch.no_grad():
        lin.weight[:] = torch.tensor([[1.0], [-1.0]])  # unit 0 fires for x > 0, unit 1 for x < 0
    net = nn.Sequential(lin, nn.ReLU())
    opt = torch.optim.SGD(net.parameters(), lr=0.0)
    with gd.watch(net, opt, activation_every=1, dead_window=2) as w:
        for sign in (1.0, -1.0, -1.0, -1.0):
            net(torch.full((3, 1), sign)).sum().backward()
            opt.step()
            w.step()
    dead = [s["act"]["1"]["dead_frac"] for s in w.records()[1]]
    assert dead == [0.5, 0.0, 0.5, 0.5]


def test_step_path_never_reads_device_values_back(monkeypatch):
    """The step path (hooks, w.step, sampled forwards) must not synchronise with the host.

    On CPU watch reads one bool per step on purpose (free there); with that switched off,
    as on an accelerator, any host read of a tensor value between flushes raises."""
    torch.manual_seed(0)
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    x = torch.randn(8, 6)
    w = gd.watch(model, opt, example_inputs=x, flush_every=100, activation_every=2, update_every=2,
                 weight_every=1, output_grads=True)
    w._host_check = False

    def boom(*a, **k):
        raise AssertionError("host read in the step path")

    with monkeypatch.context() as m:
        for name in ("item", "__bool__", "tolist", "__float__", "__int__", "cpu", "numpy"):
            m.setattr(torch.Tensor, name, boom)
        for _ in range(4):
            loss = loss_of(model(x))
            loss.backward()
            opt.step()
            opt.zero_grad()
            w.step(loss.detach())
    w.detach()
    steps = w.records()[1]
    assert len(steps) == 4 and "act" in steps[2] and "update_norm" in steps[2]
    assert all(v == 0 for v in steps[0]["nonfinite"].values())


def test_records_between_opt_step_and_w_step_keeps_loss_with_its_step():
    torch.manual_seed(0)
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    losses = []
    with gd.watch(model, opt, flush_every=3) as w:
        for _ in range(5):
            loss = loss_of(model(torch.randn(8, 6)))
            loss.backward()
            opt.step()
            opt.zero_grad()
            w.records()  # a peek mid-step must not shift the loss to the next step
            w.step(loss)
            losses.append(loss.item())
    steps = w.records()[1]
    assert [s["step"] for s in steps] == [1, 2, 3, 4, 5]
    assert [s["loss"] for s in steps] == pytest.approx(losses, rel=1e-6)


def test_lazy_map_from_keyword_inputs_and_mixed_inputs_fallback():
    class KW(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.b, self.a = nn.Linear(3, 3), nn.Linear(3, 1)  # defined in reverse order

        def forward(self, x, *, scale=1.0):
            return self.a(torch.relu(self.b(x))) * scale

    net = KW()
    opt = torch.optim.SGD(net.parameters(), lr=0.0)
    with gd.watch(net, opt) as w:
        net(x=torch.randn(2, 3)).sum().backward()  # keyword-only inputs: the map works
        opt.step()
    assert [ly["name"] for ly in w.records()[0]["layers"]] == ["b", "a"]
    assert w.records()[0]["config"]["mapped"] is True
    with gd.watch(net, opt) as w2:  # mixed inputs bound to forward's parameters: x=..., scale=...
        net(torch.randn(2, 3), scale=2.0).sum().backward()
        opt.step()
    assert w2.records()[0]["config"]["mapped"] is True

    class Star(KW):
        def forward(self, *xs, scale=1.0):  # *args: no binding, the named_modules fallback
            return self.a(torch.relu(self.b(xs[0]))) * scale

    star = Star()
    with pytest.warns(UserWarning, match="mixes positional and keyword"):
        with gd.watch(star, opt) as w3:
            star(torch.randn(2, 3), scale=2.0).sum().backward()
            opt.step()
    meta = w3.records()[0]
    assert meta["config"]["mapped"] is False and [ly["name"] for ly in meta["layers"]] == ["b", "a"]
