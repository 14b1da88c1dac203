"""``gd.check`` on models we did not write. A tiny HF Wav2Vec2 (random init, built from a config, in training mode as
constructed): its feature encoder sets ``requires_grad`` on its own input, which a probe input
that requires grad cannot take (it was a ``ModelCallError`` blaming the input shape). Probed
without the input gradient, the healthy model gets no finding: its 3-conv front end's 0.27
orders/layer is no longer extrapolated over the 20 layers (it read as 5.1 orders of vanishing).
A model returning (logits, features): the probe's loss goes to the logits.
"""

from __future__ import annotations

import pytest
import torch

import graddoctor as gd
from graddoctor.diagnose.checktime.probe_rules import trend_of_logs

transformers = pytest.importorskip("transformers")


def _wav2vec2():
    torch.manual_seed(0)
    cfg = transformers.Wav2Vec2Config(
        hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
        conv_dim=(32, 32, 32), conv_stride=(5, 4, 2), conv_kernel=(10, 4, 2), num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=4, num_labels=2, mask_time_prob=0.0, classifier_proj_size=32)
    return transformers.Wav2Vec2ForSequenceClassification(cfg)


def test_check_runs_on_a_model_that_sets_requires_grad_on_its_input_and_finds_nothing():
    model = _wav2vec2()
    assert model.training
    batch = {"input_values": torch.randn(16, 1600), "labels": torch.randint(0, 2, (16,))}
    report = gd.check(model, batch)
    assert report.data["probe"]["grad_log10"], report.data["probe"]
    assert report.ok and "vanishing-gradient" not in report.codes, str(report)
    assert model.training and all(p.grad is None for p in model.parameters())  # left as it was


def test_a_rate_from_a_short_stretch_is_not_extrapolated_over_the_model():
    names = ["fe.0.conv", "fe.1.conv", "fe.2.conv"] + [f"enc_{chr(97 + i)}" for i in range(17)]  # 17 roles
    logs = [-6.0, -5.7, -5.4] + [-5.0] * 17  # 0.3 orders/layer over the 3-conv front end only
    assert trend_of_logs(names, logs)["orders"] == pytest.approx(0.6)
    deep = [f"{i}" for i in range(20)]  # one role over the whole depth: the rate is the model's
    assert trend_of_logs(deep, [-0.3 * (19 - i) for i in range(20)])["orders"] == pytest.approx(5.7)


def test_the_probe_loss_goes_to_the_output_the_target_belongs_to():
    # a model returning (logits [B, 10], features [B, 128]): cross-entropy on the logits, not on
    # the larger feature tensor (the head was "off the path" and the report clean); a loss_fn
    # written for the whole output gets the whole output, one written for a tensor the logits
    from torch import nn

    class TwoHeads(nn.Module):
        def __init__(self):
            super().__init__()
            self.body, self.head = nn.Sequential(nn.Linear(8, 128), nn.ReLU()), nn.Linear(128, 10)

        def forward(self, x):
            f = self.body(x)
            return self.head(f), f

    torch.manual_seed(0)
    net, x, y = TwoHeads(), torch.randn(16, 8), torch.randint(0, 10, (16,))
    report = gd.check(net, x, target=y)
    assert "head" not in report.data["probe"].get("off_path", []), report.data["probe"]
    whole = gd.check(net, x, target=y, loss_fn=lambda out, t: nn.functional.cross_entropy(out[0], t))
    tensor = gd.check(net, x, target=y, loss_fn=nn.functional.cross_entropy)
    for r in (whole, tensor):
        assert r.data["probe"]["loss"] == pytest.approx(report.data["probe"]["loss"])


def test_zero_weights_that_never_move_are_a_dead_path_but_a_lone_zero_gain_is_not():
    # two zero factors in series (LayerScale gamma = 0 after a zero output projection) get no
    # gradient either: the branch never trains. An all-zero MLP the same. A lone zero gain
    # (ReZero, zero-init residual) gets a gradient at init and moves: clean
    from torch import nn

    class Block(nn.Module):
        def __init__(self, zero_proj):
            super().__init__()
            self.fc1, self.act, self.fc2 = nn.Linear(16, 32), nn.GELU(), nn.Linear(32, 16)
            self.gamma = nn.Parameter(torch.zeros(16))
            if zero_proj:  # a zero projection (bias too: a nonzero bias would move gamma)
                nn.init.zeros_(self.fc2.weight)
                nn.init.zeros_(self.fc2.bias)

        def forward(self, x):
            return x + self.gamma * self.fc2(self.act(self.fc1(x)))

    def net(zero_proj):
        torch.manual_seed(0)
        return nn.Sequential(nn.Linear(8, 16), *[Block(zero_proj) for _ in range(3)], nn.Linear(16, 4))

    x, y = torch.randn(32, 8), torch.randint(0, 4, (32,))
    dead = gd.check(net(True), x, target=y)
    assert [f.severity for f in dead.by_code("vanishing-gradient")] == ["error"], str(dead)
    assert "nothing ever moves them" in dead.by_code("vanishing-gradient")[0].message
    assert "vanishing-gradient" not in gd.check(net(False), x, target=y).codes
    zero_mlp = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 4))
    for m in zero_mlp:
        if isinstance(m, nn.Linear):
            nn.init.zeros_(m.weight)
            nn.init.zeros_(m.bias)
    assert gd.check(zero_mlp, x, target=y).by_code("vanishing-gradient")[0].severity == "error"


def test_a_dead_relu_stack_says_no_gradient_reaches_the_input_side():
    # every unit dead (bias -3): the headline said "shrinks by 0.0 orders ... over 1 layers"
    from torch import nn

    torch.manual_seed(0)
    layers = []
    for _ in range(5):
        lin = nn.Linear(64, 64)
        nn.init.constant_(lin.bias, -3.0)
        layers += [lin, nn.ReLU()]
    net = nn.Sequential(*layers, nn.Linear(64, 10))
    f = gd.check(net, torch.randn(32, 64), target=torch.randint(0, 10, (32,))).by_code("vanishing-gradient")[0]
    assert f.severity == "error" and f.message.startswith("at initialisation no gradient reaches the input side")
