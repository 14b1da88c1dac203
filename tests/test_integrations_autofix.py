"""Autofix inside the framework callbacks (``GradDoctorCallback(autofix=True)``): the Lightning
run makes the same fix at the same step as ``gd.watch(..., autofix=True)`` in a plain loop on
the same model, data and optimizer (the oracle); the module and optimizer objects the framework
holds are repaired in place and training runs to its end; a setup autofix cannot serve turns it
off with one warning line and watching goes on."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

import graddoctor as gd
from graddoctor.integrations.autofixing import HookedAutofixWatcher

DEPTH, WIDTH, STEPS = 12, 32, 40


def deep_sigmoid() -> nn.Sequential:
    """12 sigmoid layers at PyTorch's default init: an init fault the audit finds at attach."""
    torch.manual_seed(0)
    layers: list[nn.Module] = [nn.Linear(8, WIDTH), nn.Sigmoid()]
    for _ in range(DEPTH - 2):
        layers += [nn.Linear(WIDTH, WIDTH), nn.Sigmoid()]
    return nn.Sequential(*layers, nn.Linear(WIDTH, 2))


def data(n: int = STEPS * 16) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(n, 8, generator=g)
    return x, (x[:, 0] + x[:, 1] > 0).long()


def trainable_ids(model: nn.Module) -> set[int]:
    return {id(p) for p in model.parameters() if p.requires_grad}


def grouped_ids(optimizer: torch.optim.Optimizer) -> set[int]:
    return {id(p) for g in optimizer.param_groups for p in g["params"]}


def plain_loop_fixes(net: nn.Module, opt: torch.optim.Optimizer, **watch_kw) -> list[tuple[int, list[str]]]:
    """The autofix rounds of ``gd.watch`` in a plain loop over ``data()`` in batches of 16 (the oracle)."""
    x, y = data()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with gd.watch(net, opt, autofix=True, **watch_kw) as w:
            for k in range(STEPS):
                loss = nn.functional.cross_entropy(net(x[16 * k:16 * (k + 1)]), y[16 * k:16 * (k + 1)])
                opt.zero_grad()
                loss.backward()
                opt.step()
                w.step(loss)
    return [(e["step"], e["remedies"]) for e in w.fixes]


def lightning_trainer(cb, steps: int = STEPS):
    pl = pytest.importorskip("lightning.pytorch")
    return pl.Trainer(max_steps=steps, callbacks=[cb], logger=False, enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False, accelerator="cpu")


def loader(n: int = STEPS * 16):
    from torch.utils.data import DataLoader, TensorDataset

    return DataLoader(TensorDataset(*data(n)), batch_size=16, shuffle=False)


# ---------------------------------------------------------------- Lightning


def test_lightning_autofix_makes_the_plain_loops_fix_in_place_and_fit_runs_on():
    pl = pytest.importorskip("lightning.pytorch")
    from graddoctor.integrations.lightning import GradDoctorCallback

    class Deep(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = deep_sigmoid()
            self.example_input_array = data()[0][:16]

        def forward(self, x):
            return self.net(x)

        def training_step(self, batch, batch_idx):
            x, y = batch
            return nn.functional.cross_entropy(self(x), y)

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.5)

    module, cb = Deep(), GradDoctorCallback(autofix=True)
    trainer = lightning_trainer(cb)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(module, loader())
    fixes = [(e["step"], e["remedies"]) for e in cb.watcher.fixes]
    net = deep_sigmoid()
    oracle = plain_loop_fixes(net, torch.optim.SGD(net.parameters(), lr=0.5), example_inputs=data()[0][:16])
    assert fixes and fixes[0][0] == 10 and fixes == oracle, fixes
    assert trainer.global_step == STEPS  # the fit ran to its end
    (opt,) = trainer.optimizers  # the optimizer Lightning steps, rebound to the repaired module
    assert grouped_ids(opt) == trainable_ids(module)
    assert not any(isinstance(m, nn.Sigmoid) for m in module.modules())  # swapped in place
    assert cb.report().data["autofix"][0]["step"] == 10


def test_a_resumed_run_is_judged_from_its_own_first_step():
    # a Lightning / HF resume numbers the steps from the checkpoint's global step (start_at): the
    # judged window and the warm-up start there (the first check 10 steps in, as in a new run)
    net, (x, y) = deep_sigmoid(), data()
    opt = torch.optim.SGD(net.parameters(), lr=0.5)
    w = HookedAutofixWatcher(net, opt, None, autofix=True, example_inputs=x[:16]).attach()
    w.start_at(95)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for k in range(STEPS):
            loss = nn.functional.cross_entropy(net(x[16 * k:16 * (k + 1)]), y[16 * k:16 * (k + 1)])
            opt.zero_grad()
            loss.backward()
            w.before_optimizer_step(opt)
            opt.step()
            w.step(loss)
        w.detach()
    assert [s["step"] for s in w.records()[1]] == list(range(96, 96 + STEPS))
    assert w.fixes and w.fixes[0]["step"] == 105, [(e["step"], e["remedies"]) for e in w.fixes]


def exploding_net() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 2))


def test_lightning_autofix_clip_acts_on_the_gradients_the_step_uses():
    # Lightning computes the gradients inside optimizer.step (its closure), after the optimizer's
    # pre-hooks: the clip must still bound the gradients the update uses, as in the plain loop
    pl = pytest.importorskip("lightning.pytorch")
    from graddoctor.integrations.lightning import GradDoctorCallback

    class Exploding(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = exploding_net()
            self.used: list[float] = []

        def training_step(self, batch, batch_idx):
            return nn.functional.cross_entropy(self.net(batch[0]), batch[1])

        def configure_optimizers(self):
            opt = torch.optim.SGD(self.parameters(), lr=30.0, momentum=0.9)
            opt.register_step_post_hook(lambda o, a, k: self.used.append(float(torch.cat(
                [p.grad.flatten() for g in o.param_groups for p in g["params"] if p.grad is not None]).norm())))
            return opt

    module, cb = Exploding(), GradDoctorCallback(autofix=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lightning_trainer(cb).fit(module, loader())
    first = cb.watcher.fixes[0]
    assert first["step"] == 10 and "clip-norm" in first["remedies"], cb.watcher.fixes
    assert max(module.used[first["step"]:]) <= 1.0 + 1e-4, module.used  # every later step clipped to 1
    net = exploding_net()  # the plain loop: the same rounds
    oracle = plain_loop_fixes(net, torch.optim.SGD(net.parameters(), lr=30.0, momentum=0.9))
    assert [(e["step"], e["remedies"]) for e in cb.watcher.fixes] == oracle


def test_lightning_autofix_off_with_two_optimizers_warns_once_and_watches():
    pl = pytest.importorskip("lightning.pytorch")
    from graddoctor.integrations.lightning import GradDoctorCallback

    class Two(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.automatic_optimization = False
            self.net = deep_sigmoid()

        def training_step(self, batch, batch_idx):
            for opt in self.optimizers():
                loss = nn.functional.cross_entropy(self.net(batch[0]), batch[1])
                opt.zero_grad()
                self.manual_backward(loss)
                opt.step()

        def configure_optimizers(self):
            return [torch.optim.SGD(self.net[:4].parameters(), lr=0.1),
                    torch.optim.SGD(self.net[4:].parameters(), lr=0.1)]

    cb = GradDoctorCallback(autofix=True)
    with pytest.warns(UserWarning, match=r"autofix: off \(2 optimizers"):
        lightning_trainer(cb, steps=4).fit(Two(), loader(64))
    assert not isinstance(cb.watcher, HookedAutofixWatcher) and cb.records()[1]  # watched, not repaired
    assert cb.records()[0]["config"]["several_optimizers"] is True  # a flat plateau there is info


def test_a_bad_autofix_value_is_a_clear_error_at_construction():
    pytest.importorskip("lightning.pytorch")
    from graddoctor.errors import InputError
    from graddoctor.integrations.lightning import GradDoctorCallback

    with pytest.raises(InputError, match="cannot be applied in place"):
        GradDoctorCallback(autofix=["lstm"])


@pytest.mark.parametrize("option, match", [({"flush_every": "x"}, "flush_every must be a positive int"),
                                           ({"sinks": "bogus"}, "unknown sink 'bogus'"),
                                           ({"activation_every": -1}, "activation_every must be an int >= 0")])
def test_a_bad_watch_value_is_a_clear_error_at_construction(option, match):
    pytest.importorskip("lightning.pytorch")
    from graddoctor.errors import InputError
    from graddoctor.integrations.lightning import GradDoctorCallback

    with pytest.raises(InputError, match=f"GradDoctorCallback \\(Lightning\\): {match}"):
        GradDoctorCallback(**option)


# ---------------------------------------------------------------- Hugging Face Trainer


class HFDeep(nn.Module):
    """The deep sigmoid net behind the Trainer's calling convention (keyword inputs, a loss)."""

    def __init__(self) -> None:
        super().__init__()
        self.net = deep_sigmoid()

    def forward(self, x, labels=None):
        logits = self.net(x)
        out = {"logits": logits}
        if labels is not None:
            out["loss"] = nn.functional.cross_entropy(logits, labels)
        return out


def hf_run(tmp_path, logging_steps: int = 1):
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("accelerate")
    from graddoctor.integrations.transformers import GradDoctorCallback

    x, y = data()
    rows = [{"x": x[i], "labels": y[i]} for i in range(len(x))]
    model, cb = HFDeep(), GradDoctorCallback(autofix=True)
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path), per_device_train_batch_size=16, max_steps=STEPS, logging_steps=logging_steps,
        report_to=[], save_strategy="no", use_cpu=True, disable_tqdm=True, dataloader_num_workers=0,
        learning_rate=3e-3, seed=0)
    trainer = transformers.Trainer(model=model, args=args, train_dataset=rows, callbacks=[cb])
    return model, cb, trainer


def test_hf_trainer_autofix_repairs_in_place_and_train_runs_on(tmp_path):
    model, cb, trainer = hf_run(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.train()
    assert cb.watcher.fixes and cb.watcher.fixes[0]["step"] == 10, cb.watcher.fixes
    assert "poor-init" in cb.watcher.fixes[0]["codes"]  # the init audit ran on the Trainer's keyword batch
    assert trainer.state.global_step == STEPS
    inner = getattr(trainer.optimizer, "optimizer", trainer.optimizer)  # Accelerate's wrapper
    assert grouped_ids(inner) == trainable_ids(model)
    assert not any(isinstance(m, nn.Sigmoid) for m in model.modules())


def test_hf_trainer_autofix_needs_every_steps_loss(tmp_path):
    _, cb, trainer = hf_run(tmp_path, logging_steps=5)
    with pytest.warns(UserWarning, match=r"logging_steps=1"):
        trainer.train()
    assert not isinstance(cb.watcher, HookedAutofixWatcher) and cb.records()[1]
