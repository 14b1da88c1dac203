"""The mechanism rules of issue 14 on real training runs (gd.watch + train.fit): each must fire on
a model with the fault and stay silent on its healthy twin; their remedies and the planner."""

from __future__ import annotations

import torch
from torch import nn

import graddoctor as gd
from graddoctor import zoo
from graddoctor.diagnose.training import training_findings
from graddoctor.diagnose.training.postln import block_norm_order, post_ln_no_warmup
from graddoctor.fix import remedies
from graddoctor.fix.planner import plan
from graddoctor.train import fit, sampled_batches


def _data(n=256):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 16, generator=g)
    y = (x[:, :4].argmax(1))  # learnable: 4 classes
    return x, y


def _watch(model, opt, steps=80, clip=None):
    x, y = _data()
    with gd.watch(model, optimizer=opt, example_inputs=x[:32]) as w:
        fit(model, opt, sampled_batches(x, y, 32, seed=0), steps=steps, clip=clip,
            on_step=lambda s, loss: w.step(loss))
        return w.records()


def _bn_mlp(seed=0):
    torch.manual_seed(seed)
    return zoo.mlp(depth=8, width=32, in_features=16, out_features=4, norm="batch", seed=seed)


def _freeze_bn(model):
    for m in model.modules():
        if isinstance(m, nn.BatchNorm1d):
            m.eval()
            m.train = (lambda mode=True, m=m: m)
    return model


def _codes(records):
    return {f.code: f for f in training_findings(*records)}


def test_batchnorm_eval_mode_fires_on_frozen_statistics_and_not_on_its_twin():
    net = _freeze_bn(_bn_mlp())
    found = _codes(_watch(net, torch.optim.SGD(net.parameters(), lr=0.02, momentum=0.9)))
    f = found["batchnorm-eval-mode"]
    assert f.remedies == ["train-mode"] and f.layers and all("BatchNorm" in type(net.get_submodule(n)).__name__
                                                             for n in f.layers)
    assert "loss-plateau" not in found  # the mechanism explains the plateau
    twin = _bn_mlp()
    assert "batchnorm-eval-mode" not in _codes(_watch(twin, torch.optim.SGD(twin.parameters(), lr=0.02,
                                                                             momentum=0.9)))


def test_batchnorm_frozen_on_purpose_is_not_flagged():
    net = _freeze_bn(_bn_mlp())
    for m in net.modules():
        if isinstance(m, nn.BatchNorm1d):
            m.requires_grad_(False)
    opt = torch.optim.SGD([p for p in net.parameters() if p.requires_grad], lr=0.02, momentum=0.9)
    assert "batchnorm-eval-mode" not in _codes(_watch(net, opt))


def test_clip_too_tight_reads_a_trainers_clip_from_its_threshold():
    # the Lightning / HF callbacks read the norms before the trainer clips them: the rule takes
    # the norm the clip leaves from meta["config"]["max_grad_norm"]
    from graddoctor.diagnose.training.clipping import clip_too_tight

    meta = {"layers": [{"name": "0", "kind": "linear"}], "config": {}}
    steps = [{"step": t, "loss": 2.3, "grad_norm": {"0": 0.5 + 0.01 * t}, "weight_norm": {"0": 4.0}}
             for t in range(1, 61)]
    assert clip_too_tight(meta, steps) == []  # pre-clip norms vary: no pin without the threshold
    (f,) = clip_too_tight({**meta, "config": {"max_grad_norm": 1e-4}}, steps)
    assert f.code == "clip-too-tight" and f.evidence["orders_below_weights"] > 4, f.evidence
    assert clip_too_tight({**meta, "config": {"max_grad_norm": 1.0}}, steps) == []  # never cuts


def test_clip_too_tight_fires_on_a_tiny_max_norm_and_not_on_a_sane_one():
    torch.manual_seed(0)
    net = zoo.mlp(depth=4, width=32, in_features=16, out_features=4, init="he", seed=0)
    found = _codes(_watch(net, torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9), clip=1e-4))
    f = found["clip-too-tight"]
    assert f.severity == "error" and f.evidence["pinned_frac"] >= 0.9 and f.evidence["orders_below_weights"] >= 3
    steps = plan(list(found.values()), net, _data()[0][:32])
    assert [s.options.get("value") for s in steps if s.remedy == "clip-norm"] == [1.0]
    twin = zoo.mlp(depth=4, width=32, in_features=16, out_features=4, init="he", seed=0)
    assert not _codes(_watch(twin, torch.optim.SGD(twin.parameters(), lr=0.05, momentum=0.9), clip=1.0))


def _rows():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(256, 8, 8, generator=g)
    return x, x[:, :, :4].sum(1).argmax(1)


def _tf_records(model, lr=1e-3, steps=60):
    x, y = _rows()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    with gd.watch(model, optimizer=opt, example_inputs=x[:16]) as w:
        fit(model, opt, sampled_batches(x, y, 16, seed=0), steps=steps, on_step=lambda s, loss: w.step(loss))
        return w.records()


def test_post_ln_blocks_are_told_from_pre_ln_on_real_models():
    post = zoo.transformer(depth=6, d_model=16, nhead=2, norm="post", input_dim=8, num_classes=4, max_len=8)
    pre = zoo.transformer(depth=2, d_model=16, nhead=2, norm="pre", input_dim=8, num_classes=4, max_len=8)
    meta_post, steps_post = _tf_records(post)
    assert set(block_norm_order(meta_post).values()) == {"post"}
    assert set(block_norm_order(_tf_records(pre, steps=5)[0]).values()) == {"pre"}
    # a post-LN run that learns is no finding (the fault needs the loss stuck)
    assert post_ln_no_warmup(meta_post, steps_post) == []
    # the same meta with the loss at chance, a constant LR and the gradient norm fallen to half
    # its start (collapsed onto the plateau): the fault
    def grads(i, s, fall):
        return {k: 1.0 if i < 20 else fall for k in s["grad_norm"]}

    def sized(s, ratio):  # the sampled update/weight ratios set to ``ratio``
        return {k: ratio for k in s["update_ratio"]} if "update_ratio" in s else None

    # full-size first steps (2% of the weights, as Adam at 1e-2 on the suites' stuck faults)
    stuck = [{**s, "loss": 1.386, "grad_norm": grads(i, s, 0.5),
              **({"update_ratio": sized(s, 0.02)} if "update_ratio" in s else {})} for i, s in enumerate(steps_post)]
    f = post_ln_no_warmup(meta_post, stuck)[0]
    assert abs(f.evidence["grad_norm_fall"] - 0.5) < 1e-6 and f.evidence["first_update_ratio"] == 0.02
    # the same run with small steps (0.2% of the weights: a tiny BERT at AdamW 5e-5) is flat
    # because its rate is small; a warm-up is the wrong advice
    small = [{**s, **({"update_ratio": sized(s, 0.002)} if "update_ratio" in s else {})} for s in stuck]
    assert post_ln_no_warmup(meta_post, small) == []
    # stuck with the gradient holding up: a plateau the net is working through, no finding
    held = [dict(s, grad_norm=grads(i, s, 1.1)) for i, s in enumerate(stuck)]
    assert post_ln_no_warmup(meta_post, held) == []
    assert f.remedies == ["warmup", "prenorm"] and f.evidence["post_ln_blocks"] == 6
    # with a warm-up recorded (LR ramping from 1% of its value), no finding
    ramp = [dict(s, lr=1e-3 * min(1.0, (i + 1) / 50)) for i, s in enumerate(stuck)]
    assert post_ln_no_warmup(meta_post, ramp) == []
    # the planner prescribes warm-up and pre-LN, not he-init / batchnorm / rezero
    rem = [s.remedy for s in plan([f], post, _rows()[0][:16])]
    assert rem == ["prenorm", "warmup"]


class _BranchNormNet(nn.Module):
    """Norms on the branches only (OLMo-2's ``x + LN(attn(x))``), or query/key norms in a pre-LN
    block (Qwen3, OLMo-2): the residual stream is never normalised."""

    def __init__(self, qk_norm: bool = False, d: int = 16) -> None:
        super().__init__()
        self.embed, self.head, self.qk_norm = nn.Linear(8, d), nn.Linear(d, 4), qk_norm
        self.blocks = nn.ModuleList(nn.ModuleDict({
            "attn": nn.ModuleDict({"q": nn.Linear(d, d), "k": nn.Linear(d, d), "v": nn.Linear(d, d),
                                   "q_norm": nn.LayerNorm(d), "k_norm": nn.LayerNorm(d)}),
            "attn_norm": nn.LayerNorm(d), "ff": nn.Linear(d, d), "ff_norm": nn.LayerNorm(d)}) for _ in range(2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.embed(x)
        for b in self.blocks:
            a = b["attn"]
            src = b["attn_norm"](h) if self.qk_norm else h  # pre-LN when qk_norm, else branch norms
            q, k = a["q"](src), a["k"](src)
            if self.qk_norm:
                q, k = a["q_norm"](q), a["k_norm"](k)
            att = torch.softmax(q @ k.transpose(1, 2) / 4, -1) @ a["v"](src)
            h = h + (att if self.qk_norm else b["attn_norm"](att))
            h = h + (b["ff"](b["ff_norm"](h)) if self.qk_norm else b["ff_norm"](b["ff"](h)))
        return self.head(h.mean(1))


def test_norms_on_the_branches_only_are_not_post_ln():
    for qk in (False, True):
        torch.manual_seed(0)
        meta, steps = _tf_records(_BranchNormNet(qk), steps=30)
        order = block_norm_order(meta)
        assert order and set(order.values()) <= {"branch", "pre"}, order
        # stuck at chance, constant LR, the gradient norm halved, full-size first steps: no finding
        stuck = [{**s, "loss": 1.386, "grad_norm": {k: 1.0 if i < 20 else 0.5 for k in s["grad_norm"]},
                  **({"update_ratio": {k: 0.02 for k in s["update_ratio"]}} if "update_ratio" in s else {})}
                 for i, s in enumerate(steps)]
        assert post_ln_no_warmup(meta, stuck) == []


def test_prenorm_switches_zoo_and_torch_blocks_and_keeps_the_input():
    post = zoo.transformer(depth=6, d_model=16, nhead=2, norm="post", input_dim=8, num_classes=4, max_len=8)
    new, change = remedies.apply("prenorm", post)
    assert change.kind == "applied" and {b.norm_style for b in new.blocks} == {"pre"}
    assert isinstance(new.norm, nn.LayerNorm) and {b.norm_style for b in post.blocks} == {"post"}
    assert new(torch.randn(3, 5, 8)).shape == (3, 4)


def test_warmup_ramps_the_lr_under_a_scheduler():
    w = nn.Parameter(torch.ones(2))
    opt = torch.optim.SGD([w], lr=0.1)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    _, change = remedies.apply("warmup", nn.Linear(2, 2), optimizer=opt, steps=2)
    used = []
    for _ in range(3):
        w.grad = torch.ones(2)
        before = w.detach().clone()
        opt.step()
        used.append(round(float((before - w.detach())[0]), 5))
        sched.step()
    assert change.kind == "applied"
    assert used == [0.05, 0.05, 0.025]  # 0.1 * 1/2, 0.05 * 2/2, 0.025 (the scheduler's own value)
    for h in change.handles:
        h.remove()


def test_train_mode_restores_batchnorm_and_the_planner_picks_it():
    net = _bn_mlp().eval()
    f = gd.Finding("batchnorm-eval-mode", "error", "eval", ["2"], {}, ["train-mode"])
    new, change = remedies.apply("train-mode", net)
    assert all(m.training for m in new.modules() if isinstance(m, nn.BatchNorm1d))
    assert not any(m.training for m in net.modules() if isinstance(m, nn.BatchNorm1d))
    assert [s.remedy for s in plan([f], net)] == ["train-mode"]


def test_a_position_bias_table_does_not_make_res_post_norm_blocks_post_ln():
    # SwinV2's continuous position bias is an MLP on a constant coordinate table: its path into the
    # attention scores is no path from the input, and read as one it put a branch norm on the skip path
    transformers = __import__("pytest").importorskip("transformers")
    torch.manual_seed(0)
    cfg = transformers.Swinv2Config(image_size=32, patch_size=4, embed_dim=16, depths=[1, 1], num_heads=[2, 2],
                                    window_size=4, num_labels=3)
    model = transformers.Swinv2ForImageClassification(cfg)
    with gd.watch(model, torch.optim.Adam(model.parameters()), example_inputs=torch.randn(2, 3, 32, 32)) as w:
        meta = w.records()[0]
    assert set(block_norm_order(meta).values()) == {"branch"}
