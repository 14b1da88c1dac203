"""The Lightning callback: per-layer gradient norms recorded for step k equal the norms that
Lightning's own ``on_before_optimizer_step`` hook measures for step k (the oracle), every
step, under accumulation, bf16-mixed, manual optimisation with two optimizers, and DDP; the
sampled update ratios equal a plain loop's."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

pytest.importorskip("lightning")

from graddoctor.integrations.lightning import GradDoctorCallback  # noqa: E402
from graddoctor.runlog import read_run  # noqa: E402
from lightning_models import Regressor, TinyGAN, loader, trainer  # noqa: E402

HERE = Path(__file__).parent


def assert_matches_oracle(steps: list[dict], oracle: list[dict]) -> None:
    assert len(steps) == len(oracle)
    for k, (rec, ref) in enumerate(zip(steps, oracle), start=1):
        assert rec["step"] == k
        for layer, norm in ref.items():
            got = rec["grad_norm"][layer]
            assert got == pytest.approx(norm, rel=1e-5), (k, layer, got, norm)


@pytest.mark.parametrize("accumulate, precision", [(1, "32-true"), (3, "32-true"), (2, "bf16-mixed")])
def test_lightning_norms_equal_the_hook_oracle(accumulate, precision):
    model, cb = Regressor(), GradDoctorCallback(flush_every=4)
    tr = trainer(callbacks=[cb], accumulate_grad_batches=accumulate, precision=precision)
    tr.fit(model, loader(n=48, batch_size=4))  # 12 batches
    meta, steps = cb.records()
    assert tr.global_step == 12 // accumulate == len(steps)
    assert_matches_oracle(steps, model.oracle)
    assert all(s["loss"] is not None for s in steps)
    assert cb.report().source == "watch"


def test_lightning_loss_is_the_mean_of_the_micro_batches():
    class Logged(Regressor):
        def __init__(self):
            super().__init__()
            self.losses = []

        def training_step(self, batch, batch_idx):
            loss = super().training_step(batch, batch_idx)
            self.losses.append(loss.item())
            return loss

    model, cb = Logged(), GradDoctorCallback()
    trainer(callbacks=[cb], accumulate_grad_batches=2).fit(model, loader(n=32, batch_size=4))
    steps = cb.records()[1]
    expected = [(a + b) / 2 for a, b in zip(model.losses[::2], model.losses[1::2])]
    assert [s["loss"] for s in steps] == pytest.approx(expected, rel=1e-5)


def test_lightning_gradient_clipping_records_the_pre_clip_norm():
    model, cb = Regressor(), GradDoctorCallback()
    trainer(callbacks=[cb], gradient_clip_val=1e-3).fit(model, loader(n=16, batch_size=4))
    steps = cb.records()[1]
    assert_matches_oracle(steps, model.oracle)
    assert max(s["grad_norm"]["net.4"] for s in steps) > 1e-2  # well above the clip


def test_lightning_manual_optimisation_with_two_optimizers():
    model, cb = TinyGAN(), GradDoctorCallback()
    tr = trainer(callbacks=[cb])
    tr.fit(model, loader(n=24, batch_size=8))  # 3 batches x 2 optimizer steps
    steps = cb.records()[1]
    assert tr.global_step == 6 == len(steps)
    assert_matches_oracle(steps, model.oracle)
    # a discriminator step has no generator norms and vice versa
    assert steps[0]["grad_norm"]["gen.0"] is None and steps[0]["grad_norm"]["disc.0"] > 0
    assert steps[1]["grad_norm"]["disc.0"] is None and steps[1]["grad_norm"]["gen.0"] > 0


class TogglingGAN(TinyGAN):
    """Lightning's GAN pattern: toggle_optimizer turns the other model's requires_grad off, while its
    last gradients stay in .grad (the generator's, at the discriminator's step)."""

    def training_step(self, batch, batch_idx):
        real, _ = batch
        opt_d, opt_g = self.optimizers()
        bce = nn.functional.binary_cross_entropy_with_logits
        fake = self(torch.randn(real.shape[0], 4))
        self.toggle_optimizer(opt_d)
        d_loss = bce(self.disc(real), torch.ones(len(real), 1)) + bce(self.disc(fake.detach()), torch.zeros(len(real), 1))
        opt_d.zero_grad()
        self.manual_backward(d_loss)
        opt_d.step()
        self.untoggle_optimizer(opt_d)
        self.toggle_optimizer(opt_g)
        g_loss = bce(self.disc(fake), torch.ones(len(real), 1))
        opt_g.zero_grad()
        self.manual_backward(g_loss)
        opt_g.step()
        self.untoggle_optimizer(opt_g)
        self.losses.append(float(g_loss))
        return g_loss.detach()


def test_lightning_toggle_optimizer_steps_record_their_own_layers_and_batch_loss():
    model, cb = TogglingGAN(), GradDoctorCallback()
    model.losses = []
    tr = trainer(callbacks=[cb])
    tr.fit(model, loader(n=24, batch_size=8))  # 3 batches x (D step, G step)
    steps = cb.records()[1]
    assert tr.global_step == 6 == len(steps)
    assert_matches_oracle(steps, model.oracle)
    for d, g in zip(steps[::2], steps[1::2]):  # the generator's stale gradients are not the D step's
        assert d["grad_norm"]["gen.0"] is None and d["grad_norm"]["disc.0"] > 0
        assert g["grad_norm"]["disc.0"] is None and g["grad_norm"]["gen.0"] > 0
    for b, loss in enumerate(model.losses):  # each batch's loss on one of its own two steps
        got = [s["loss"] for s in steps[2 * b:2 * b + 2] if s["loss"] is not None]
        assert got and abs(got[0] - loss) < 1e-5, (b, got, loss)


def test_lightning_log_dir_and_logger(tmp_path):
    from lightning.pytorch.loggers import CSVLogger

    model, cb = Regressor(), GradDoctorCallback(log_dir=tmp_path / "gd")
    trainer(callbacks=[cb], logger=CSVLogger(tmp_path / "csv")).fit(model, loader(n=16, batch_size=4))
    meta, steps = read_run(tmp_path / "gd")
    assert [s["step"] for s in steps] == [1, 2, 3, 4]
    metrics = next((tmp_path / "csv").rglob("metrics.csv")).read_text()
    assert "graddoctor/findings" in metrics


def test_lightning_records_the_update_ratios_of_a_plain_loop():
    # the sampled update sizes (||w_t - w_t-1|| / ||w||) come from the optimizer's post-hook; the
    # callback marks the step itself, so it must still open the step for that hook
    import graddoctor as gd

    model, cb = Regressor(), GradDoctorCallback()
    trainer(callbacks=[cb]).fit(model, loader(n=160, batch_size=8))
    _, got = cb.records()
    plain = Regressor()
    opt = torch.optim.SGD(plain.parameters(), lr=0.1)
    with gd.watch(plain, opt) as w:
        for x, y in loader(n=160, batch_size=8):
            loss = torch.nn.functional.mse_loss(plain(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            w.step(loss)
    want = [s for s in w.records()[1] if s.get("update_ratio")]
    assert [s["step"] for s in got if s.get("update_ratio")] == [s["step"] for s in want] == [1, 2, 4, 8, 16]
    by_step = {s["step"]: s for s in got}
    for s in want:
        for layer, ratio in s["update_ratio"].items():
            assert by_step[s["step"]]["update_ratio"][layer] == pytest.approx(ratio, rel=1e-4), (s["step"], layer)


def test_pytorch_lightning_trainer_accepts_the_callback():
    pl = pytest.importorskip("pytorch_lightning")
    cb = GradDoctorCallback()
    assert isinstance(cb, pl.Callback)


def test_records_before_fit_is_a_clear_error():
    from graddoctor.errors import InputError

    with pytest.raises(InputError, match="fit"):
        GradDoctorCallback().records()


@pytest.mark.slow
@pytest.mark.distributed
def test_lightning_ddp_rank0_equals_single_process(tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE.parent / "src"), str(HERE)])}
    out = tmp_path / "ddp.json"
    proc = subprocess.run([sys.executable, str(HERE / "_lightning_ddp_worker.py"), str(out)],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ddp = json.loads(out.read_text())
    # the same global batch (2 ranks x 4 = 8, DistributedSampler interleaves) in one process
    model, cb = Regressor(), GradDoctorCallback()
    trainer(callbacks=[cb]).fit(model, loader(n=48, batch_size=8))
    single = cb.records()[1]
    assert ddp["world_size"] == 2 and len(ddp["steps"]) == len(single) == 6
    for a, b in zip(ddp["steps"], single):
        for layer, norm in b["grad_norm"].items():
            assert a["grad_norm"][layer] == pytest.approx(norm, rel=1e-5)
    # under DDP the loss is rank 0's own (watch runs no collective there); training_step ran once per
    # step (mapping on Lightning's forward -> training_step redirect ran it twice at the first step)
    assert [a["loss"] for a in ddp["steps"]] == pytest.approx(ddp["own_losses"], rel=1e-5)
    assert ddp["meta"]["config"]["mapped"]


@pytest.mark.parametrize("precision", ["32-true", "bf16-mixed"])
def test_lightning_each_optimizer_step_records_only_the_layers_it_owns(precision):
    # the first optimizer's steps too: its other layers still hold the other optimizer's gradients
    class Rates(TinyGAN):
        def configure_optimizers(self):
            return (torch.optim.Adam(self.disc.parameters(), lr=1e-3),
                    torch.optim.Adam(self.gen.parameters(), lr=2e-4))

    model, cb = Rates(), GradDoctorCallback()
    trainer(callbacks=[cb], precision=precision).fit(model, loader(n=32, batch_size=8))
    steps = cb.records()[1]
    assert len(steps) == len(model.oracle) == 8
    for rec, ref in zip(steps, model.oracle):
        got = {layer for layer, v in rec["grad_norm"].items() if v is not None}
        assert got == {layer for layer, v in ref.items() if v is not None}, (rec["step"], rec["grad_norm"])
        assert rec["lr"] == (1e-3 if "disc.0" in ref else 2e-4)  # the stepping optimizer's rate
    assert_matches_oracle(steps, model.oracle)


def test_lightning_one_optimizer_over_part_of_the_model_still_records_every_layer():
    class Head(Regressor):
        def configure_optimizers(self):
            return torch.optim.SGD(self.net[4].parameters(), lr=0.1)

    model, cb = Head(), GradDoctorCallback()
    with pytest.warns(UserWarning, match="not in the optimizer"):
        trainer(callbacks=[cb]).fit(model, loader(n=16, batch_size=4))
    steps = cb.records()[1]
    assert all(v is not None and v > 0 for s in steps for v in s["grad_norm"].values())
    assert_matches_oracle(steps, model.oracle)


def _checkpoint(root: Path) -> str:
    return str(next(root.rglob("*.ckpt")))


def test_lightning_steps_are_the_trainers_global_step_after_a_resume(tmp_path):
    from lightning.pytorch.loggers import CSVLogger

    kw = dict(enable_checkpointing=True, default_root_dir=tmp_path)
    trainer(max_epochs=1, **kw).fit(Regressor(), loader(n=16, batch_size=4))  # 4 steps, one checkpoint
    cb = GradDoctorCallback(log_dir=tmp_path / "gd")
    tr = trainer(max_epochs=2, callbacks=[cb], logger=CSVLogger(tmp_path / "csv"), **kw)
    tr.fit(Regressor(), loader(n=16, batch_size=4), ckpt_path=_checkpoint(tmp_path))
    assert tr.global_step == 8
    assert [s["step"] for s in cb.records()[1]] == [5, 6, 7, 8]  # the trainer's numbering, as its loggers'
    assert [s["step"] for s in read_run(tmp_path / "gd")[1]] == [5, 6, 7, 8]
    assert "graddoctor/findings" in next((tmp_path / "csv").rglob("metrics.csv")).read_text()


def test_lightning_second_fit_continues_the_numbering_and_the_cli_names_the_runs(tmp_path):
    from click.testing import CliRunner

    from graddoctor.cli import main

    model, cb = Regressor(), GradDoctorCallback(log_dir=tmp_path)
    tr = trainer(callbacks=[cb], max_epochs=1)
    tr.fit(model, loader(n=16, batch_size=4))
    tr.fit_loop.max_epochs = 2
    tr.fit(model, loader(n=16, batch_size=4))
    assert [s["step"] for s in cb.records()[1]] == [5, 6, 7, 8]  # report() and records(): the last fit
    assert [s["step"] for s in read_run(tmp_path, run="first")[1]] == [1, 2, 3, 4]
    res = CliRunner().invoke(main, ["watch-report", str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert "holds 2 runs" in res.output and "--run" in res.output
    first = CliRunner().invoke(main, ["watch-report", str(tmp_path), "--run", "first"])
    assert first.exit_code == 0 and "4 steps, 3 layers" in first.output, first.output
    assert "1  " + read_run(tmp_path, run="first")[0]["run_id"] + "  4 steps (1-4)   <- shown" in first.output


def test_lightning_gradient_clip_val_too_tight_is_found():
    # the callback reads the norms before Lightning clips them: the threshold goes to the meta,
    # so clip-too-tight sees the norm the clip leaves (it used to blame the data)
    cb = GradDoctorCallback()
    trainer(max_epochs=4, gradient_clip_val=1e-5, callbacks=[cb]).fit(Regressor(), loader())
    meta, _ = cb.records()
    assert meta["config"]["max_grad_norm"] == 1e-5
    assert "clip-too-tight" in {f.code for f in cb.report().findings}
    sane = GradDoctorCallback()
    trainer(max_epochs=4, gradient_clip_val=10.0, callbacks=[sane]).fit(Regressor(), loader())
    assert "clip-too-tight" not in {f.code for f in sane.report().findings}
