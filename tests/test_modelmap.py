"""ModelMap: order, activation kinds, depth, shared modules, hook hygiene."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from graddoctor.errors import ModelCallError
from graddoctor.kinds import of_module as activation_kind
from graddoctor.modelmap import ModelMap


def _no_hooks(model: nn.Module) -> bool:
    return all(
        not m._forward_hooks and not m._forward_pre_hooks and not m._backward_hooks
        and not getattr(m, "_forward_hooks_always_called", {})
        and not getattr(m, "_forward_hooks_with_kwargs", {})
        and not getattr(m, "_forward_pre_hooks_with_kwargs", {})
        for m in model.modules()
    )


def test_sequential_mlp_order_and_activations():
    net = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 3), nn.Sigmoid())
    m = ModelMap(net, torch.randn(5, 4))
    assert [x.name for x in m.layers] == ["0", "2", "4"]
    assert [x.activation for x in m.layers] == ["tanh", "relu", "sigmoid"]
    assert [x.depth for x in m.layers] == [1, 2, 3]
    assert [s.name for s in m.activations] == ["1", "3", "5"]
    assert [s.is_output for s in m.activations] == [False, False, True]
    assert [x.is_output for x in m.layers] == [False, False, True]
    assert [c.name for c in m.calls] == ["0", "1", "2", "3", "4", "5"]
    assert m.layers[0].output_shape == (5, 8)
    assert (m.shortest_path, m.longest_path) == (3, 3)


class BasicBlock(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        self.conv2 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += x  # in-place residual add
        return F.relu(out)


class TinyResNet(nn.Module):
    def __init__(self, blocks: int = 3, skip: bool = True) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.blocks = nn.Sequential(*[BasicBlock(8) for _ in range(blocks)])
        self.fc = nn.Linear(8, 10)

    def forward(self, x):
        x = self.blocks(F.relu(self.stem(x)))
        return self.fc(x.mean((2, 3)))


def test_cnn_with_inplace_residual_blocks():
    model = TinyResNet(blocks=3)
    model.train()
    running = model.blocks[0].bn1.running_mean.clone()
    m = ModelMap(model, torch.randn(2, 3, 8, 8))
    names = [x.name for x in m.layers]
    assert names[0] == "stem" and names[-1] == "fc"
    assert names[1:5] == ["blocks.0.conv1", "blocks.0.bn1", "blocks.0.conv2", "blocks.0.bn2"]
    # conv -> bn -> functional relu: the conv is followed by relu through the norm
    assert m.layer("blocks.0.conv1").activation == "relu"
    assert m.layer("blocks.0.conv2").activation == "relu"
    assert m.layer("stem").activation == "relu"
    assert m.layer("fc").activation is None and m.layer("fc").is_output
    fn_sites = [s for s in m.activations if s.functional]
    assert fn_sites[0].name == "model/relu#0" and fn_sites[1].name == "blocks.0/relu#0"
    # 1 stem + 3 blocks x 4 layers + fc = 14 on the longest path; shortcuts skip the blocks
    assert m.longest_path == 14
    assert m.shortest_path == 2
    assert m.layer("blocks.2.bn2").min_depth == 2 + 3 * 0 + 3  # via shortcuts: stem, then conv1,bn1... of last
    # BatchNorm running stats and mode restored
    assert torch.equal(model.blocks[0].bn1.running_mean, running) and model.training


def test_lstm_and_gru():
    class Seq(nn.Module):
        def __init__(self, rnn: nn.Module) -> None:
            super().__init__()
            self.rnn = rnn
            self.head = nn.Linear(16, 1)

        def forward(self, x):
            out, _ = self.rnn(x)
            return self.head(out[:, -1])

    for rnn in (nn.LSTM(3, 16, batch_first=True), nn.GRU(3, 16, num_layers=2, batch_first=True)):
        m = ModelMap(Seq(rnn), torch.randn(4, 30, 3))
        assert [x.name for x in m.layers] == ["rnn", "head"]
        assert m.layers[0].kind == "rnn" and m.layers[0].input_shape == (4, 30, 3)
        assert m.layers[0].activation is None  # gates live inside the kernel
        assert m.activations == []
        assert m.longest_path == 2


def test_transformer_encoder_shows_submodules_in_eval_mode():
    layer = nn.TransformerEncoderLayer(16, 2, dim_feedforward=32, batch_first=True)
    enc = nn.TransformerEncoder(layer, num_layers=2, enable_nested_tensor=False).eval()
    m = ModelMap(enc, torch.randn(2, 5, 16))
    names = [x.name for x in m.layers]
    assert names == [
        f"layers.{i}.{n}" for i in range(2)
        for n in ("self_attn", "norm1", "linear1", "linear2", "norm2")
    ]
    assert m.layer("layers.0.linear1").activation == "relu"  # F.relu by default
    assert "layers.0.self_attn.out_proj" in m.uncalled  # used functionally by MHA
    assert m.shortest_path < m.longest_path  # residual paths
    assert not enc.training


class Functional(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(4, 4)
        self.b = nn.Linear(4, 4)
        self.c = nn.Linear(4, 4)
        self.d = nn.Linear(4, 4)

    def forward(self, x):
        x = torch.sigmoid(self.a(x))
        x = self.b(x).tanh()
        x = F.gelu(self.c(x))
        return F.leaky_relu(self.d(x), inplace=True)


def test_functional_activations():
    m = ModelMap(Functional(), torch.randn(2, 4))
    assert [x.activation for x in m.layers] == ["sigmoid", "tanh", "gelu", "leaky_relu"]
    assert [s.name for s in m.activations] == ["model/sigmoid#0", "model/tanh#0", "model/gelu#0", "model/leaky_relu#0"]
    assert all(s.functional and s.owner == "" for s in m.activations)
    assert [s.family for s in m.activations] == ["saturating", "saturating", "relu", "relu"]
    assert m.activations[-1].is_output and not m.activations[0].is_output


class Shared(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.inp = nn.Linear(4, 8)
        self.hidden = nn.Linear(8, 8)
        self.act = nn.ReLU()
        self.out = nn.Linear(8, 2)

    def forward(self, x):
        x = self.act(self.inp(x))
        for _ in range(3):
            x = self.act(self.hidden(x))
        return self.out(x)


def test_module_used_several_times():
    m = ModelMap(Shared(), torch.randn(2, 4))
    assert [x.name for x in m.layers] == ["inp", "hidden", "out"]
    assert m.layer("hidden").calls == 3
    assert set(m.shared) == {"hidden", "act"}
    assert m.layer("hidden").depth == 4 and m.layer("out").depth == 5
    assert [c.name for c in m.calls].count("hidden") == 3


class KwargsModel(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(20, 8)
        self.proj = nn.Linear(8, 8)
        self.act = nn.GELU()
        self.head = nn.Linear(8, 3)

    def forward(self, input_ids, attention_mask=None):
        h = self.act(self.proj(self.emb(input_ids)))
        if attention_mask is not None:
            h = h * attention_mask[..., None]
        return {"logits": self.head(h)}


def test_dict_of_kwargs():
    inputs = {"input_ids": torch.randint(0, 20, (2, 6)), "attention_mask": torch.ones(2, 6)}
    m = ModelMap(KwargsModel(), inputs)
    assert [x.name for x in m.layers] == ["emb", "proj", "head"]
    assert [x.kind for x in m.layers] == ["embedding", "linear", "linear"]
    assert m.layer("proj").activation == "gelu"
    assert m.layer("head").is_output and m.longest_path == 3
    assert not hasattr(inputs["attention_mask"], "_graddoctor_tag")


def test_model_without_parameters_gives_empty_map():
    m = ModelMap(nn.Sequential(nn.ReLU(), nn.Tanh()), torch.randn(2, 3))
    assert m.layers == [] and len(m) == 0
    assert [s.kind for s in m.activations] == ["relu", "tanh"]


class Boom(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(3, 3)

    def forward(self, x):
        self.lin(x)
        raise RuntimeError("boom")


@pytest.mark.parametrize("train", [True, False])
def test_hooks_removed_mode_and_rng_restored(train: bool):
    for model, inputs, raises in [
        (TinyResNet(), torch.randn(2, 3, 8, 8), False),
        (Boom(), torch.randn(2, 3), True),
        (nn.Linear(3, 3), torch.randn(2, 4), True),  # wrong shape
    ]:
        model.train(train)
        torch.manual_seed(123)
        expected = torch.rand(3)
        torch.manual_seed(123)
        if raises:
            with pytest.raises(ModelCallError, match="forward failed"):
                ModelMap(model, inputs)
        else:
            ModelMap(model, nn.Dropout(0.5)(inputs))  # dropout draws from the RNG
            torch.manual_seed(123)
        assert torch.equal(torch.rand(3), expected)
        assert _no_hooks(model)
        assert all(m.training == train for m in model.modules())


def test_param_groups_cover_every_parameter_once():
    layer = nn.TransformerEncoderLayer(16, 2, dim_feedforward=32, batch_first=True)
    enc = nn.TransformerEncoder(layer, num_layers=2, enable_nested_tensor=False)
    m = ModelMap(enc, torch.randn(2, 5, 16))
    groups = m.param_groups(enc)
    names = [n for n, _ in groups]
    assert names.index("layers.0.self_attn.out_proj") == names.index("layers.0.self_attn") + 1
    ids = [id(p) for _, ps in groups for p in ps]
    assert sorted(ids) == sorted(id(p) for p in enc.parameters())


def test_activation_kind_of_third_party_modules():
    class NewGELUActivation(nn.Module):
        def forward(self, x):
            return 0.5 * x * (1 + torch.tanh(0.79788456 * (x + 0.044715 * x**3)))

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(4, 4)
            self.act = NewGELUActivation()

        def forward(self, x):
            return self.act(self.fc(x))

    assert activation_kind(NewGELUActivation()) == "gelu"
    m = ModelMap(Net(), torch.randn(2, 4))
    assert [s.name for s in m.activations] == ["act"]  # the inner tanh is part of the GELU
    assert m.layer("fc").activation == "gelu"


def test_hf_gpt2_from_config():
    transformers = pytest.importorskip("transformers")
    cfg = transformers.GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=50, n_positions=16)
    torch.manual_seed(0)
    model = transformers.GPT2LMHeadModel(cfg)
    ids = torch.randint(0, 50, (2, 8))
    m = ModelMap(model, {"input_ids": ids, "labels": ids})
    kinds = {x.name: x.activation for x in m.layers}
    assert kinds["transformer.h.0.mlp.c_fc"] == "gelu"
    assert m.layer("transformer.h.0.mlp.c_fc").kind == "linear"
    assert m.shortest_path < m.longest_path
    assert _no_hooks(model)


def test_map_records_its_model_weakly():
    import gc

    net = nn.Sequential(nn.Linear(2, 2), nn.Sigmoid())
    m = ModelMap(net, torch.randn(1, 2))
    assert m.model is net and m.with_activations({"1": nn.ReLU()}).model is net
    assert m.to_dict()["model"] == "Sequential"  # the dict names the type only
    del net
    gc.collect()
    assert m.model is None  # the map does not keep the model alive

