"""The Hugging Face Trainer callback: per-layer gradient norms recorded for step k equal the
norms measured in the Trainer's own ``on_pre_optimizer_step`` event for step k (the oracle;
with clipping: pre-clip norms x the clip coefficient, and their total equals the Trainer's
logged ``grad_norm``), under gradient accumulation and bf16; one record per optimizer step."""

from __future__ import annotations

import math

import pytest
import torch

transformers = pytest.importorskip("transformers")
pytest.importorskip("accelerate")

from graddoctor.integrations.transformers import GradDoctorCallback  # noqa: E402


def tiny_bert():
    torch.manual_seed(0)
    cfg = transformers.BertConfig(vocab_size=40, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                                  intermediate_size=32, max_position_embeddings=16, num_labels=2)
    return transformers.BertForSequenceClassification(cfg)


def dataset(n: int = 24, seq: int = 8) -> list[dict]:
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(1, 40, (n, seq), generator=g)
    return [{"input_ids": ids[i], "attention_mask": torch.ones(seq, dtype=torch.long),
             "labels": torch.tensor(int(ids[i, 0] % 2))} for i in range(n)]


class Oracle(transformers.TrainerCallback):
    """Per-layer gradient norms in the Trainer's own on_pre_optimizer_step event, and the logs."""

    def __init__(self, model):
        self.model, self.norms, self.logs = model, [], []

    def on_pre_optimizer_step(self, args, state, control, **kw):
        out = {}
        for name, m in self.model.named_modules():
            grads = [p.grad.flatten() for p in m.parameters(recurse=False) if p.grad is not None]
            if grads:
                out[name] = torch.cat(grads).double().norm().item()
        self.norms.append(out)

    def on_log(self, args, state, control, logs=None, **kw):
        if "loss" in logs:
            self.logs.append(dict(logs))


def train(tmp_path, **kw):
    model = tiny_bert()
    cb, oracle = GradDoctorCallback(flush_every=4), Oracle(model)
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path), per_device_train_batch_size=4, num_train_epochs=1, logging_steps=1,
        report_to=[], save_strategy="no", use_cpu=True, disable_tqdm=True, dataloader_num_workers=0,
        learning_rate=1e-3, seed=0, **kw)
    trainer = transformers.Trainer(model=model, args=args, train_dataset=dataset(), callbacks=[cb, oracle])
    trainer.train()
    meta, steps = cb.records()
    return trainer, cb, oracle, meta, steps


def compare(steps, oracle_norms, coefs=None):
    assert len(steps) == len(oracle_norms)
    compared = 0
    for k, (rec, ref) in enumerate(zip(steps, oracle_norms)):
        coef = 1.0 if coefs is None else coefs[k]
        for layer, got in rec["grad_norm"].items():
            if got is None or layer not in ref:
                continue
            assert got * coef == pytest.approx(ref[layer], rel=1e-5), (k, layer)
            compared += 1
    assert compared >= 10 * len(steps)


@pytest.mark.parametrize("accum, bf16", [(1, False), (3, False), (2, True)])
def test_trainer_norms_equal_the_pre_optimizer_step_oracle(tmp_path, accum, bf16):
    trainer, cb, oracle, meta, steps = train(tmp_path, gradient_accumulation_steps=accum, bf16=bf16,
                                             max_grad_norm=0.0)
    assert trainer.state.global_step == 6 // accum == len(steps)
    compare(steps, oracle.norms)
    losses = [s["loss"] for s in steps]
    assert losses == pytest.approx([lg["loss"] for lg in oracle.logs], rel=1e-6)
    assert cb.report().source == "watch"
    # the update sizes are sampled as in a plain loop (steps 1, 2, 4, ...), from the optimizer's post-hook
    assert [s["step"] for s in steps if s.get("update_ratio")] == [k for k in (1, 2, 4) if k <= len(steps)]


def test_trainer_records_the_pre_clip_norm_and_the_clip(tmp_path):
    trainer, cb, oracle, meta, steps = train(tmp_path, max_grad_norm=0.05)
    assert meta["config"]["max_grad_norm"] == 0.05
    coefs = [s["clip"]["coef"] for s in steps]
    assert max(coefs) < 1.0  # every step was clipped
    compare(steps, oracle.norms, coefs)  # pre-clip x coef = what the optimizer saw
    for s, lg in zip(steps, oracle.logs):  # the Trainer's own pre-clip total norm
        assert s["clip"]["norm"] == pytest.approx(lg["grad_norm"], rel=1e-5)
        assert s["clip"]["norm"] > 0.05


def test_trainer_without_logging_every_step_keeps_every_step(tmp_path):
    model = tiny_bert()
    cb = GradDoctorCallback()
    args = transformers.TrainingArguments(output_dir=str(tmp_path), per_device_train_batch_size=4,
                                          logging_steps=3, report_to=[], save_strategy="no", use_cpu=True,
                                          disable_tqdm=True, num_train_epochs=1)
    with pytest.warns(UserWarning, match=r"logs the loss every 3 steps .*logging_steps=1"):
        transformers.Trainer(model=model, args=args, train_dataset=dataset(), callbacks=[cb]).train()
    steps = cb.records()[1]
    assert [s["step"] for s in steps] == [1, 2, 3, 4, 5, 6]
    assert [s["loss"] is not None for s in steps] == [False, False, True, False, False, True]
    assert all(math.isfinite(v) for s in steps for v in s["grad_norm"].values() if v is not None)


def test_trainer_steps_are_the_global_step_after_a_resume(tmp_path):
    class Steps(transformers.TrainerCallback):
        def __init__(self):
            self.logged = []

        def on_log(self, args, state, control, logs=None, **kw):
            if "loss" in logs:
                self.logged.append(state.global_step)

    def trainer(cb):
        args = transformers.TrainingArguments(
            output_dir=str(tmp_path), per_device_train_batch_size=4, num_train_epochs=1, logging_steps=1,
            report_to=[], save_strategy="steps", save_steps=3, use_cpu=True, disable_tqdm=True,
            dataloader_num_workers=0, learning_rate=1e-3, seed=0)
        return transformers.Trainer(model=tiny_bert(), args=args, train_dataset=dataset(), callbacks=[cb, logs])

    logs = Steps()
    trainer(GradDoctorCallback()).train()  # 6 steps, checkpoints at 3 and 6
    cb, logs = GradDoctorCallback(log_dir=tmp_path / "gd"), Steps()
    trainer(cb).train(resume_from_checkpoint=str(tmp_path / "checkpoint-3"))
    steps = cb.records()[1]
    assert [s["step"] for s in steps] == logs.logged == [4, 5, 6]  # the Trainer's numbering
    assert all(s["loss"] is not None for s in steps)


class _AuxFirst(torch.nn.Module):
    """A head for another task registered before the model: its parameters, the model's first,
    never get a gradient (the callback used to hook that first parameter alone and then read the
    step after the Trainer's clip)."""

    def __init__(self):
        super().__init__()
        self.aux_head = torch.nn.Linear(16, 3)
        self.bert = tiny_bert()

    def forward(self, input_ids=None, attention_mask=None, labels=None):
        return self.bert(input_ids=input_ids, attention_mask=attention_mask, labels=labels)


def test_trainer_reads_pre_clip_norms_when_the_first_parameter_gets_no_gradient(tmp_path):
    model = _AuxFirst()
    cb, oracle = GradDoctorCallback(flush_every=4), Oracle(model)
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path), per_device_train_batch_size=4, num_train_epochs=1, logging_steps=1,
        report_to=[], save_strategy="no", use_cpu=True, disable_tqdm=True, dataloader_num_workers=0,
        learning_rate=1e-3, seed=0, max_grad_norm=0.05, gradient_accumulation_steps=2)
    transformers.Trainer(model=model, args=args, train_dataset=dataset(), callbacks=[cb, oracle]).train()
    steps = cb.records()[1]
    assert len(steps) == 3
    for s, lg in zip(steps, oracle.logs):  # the Trainer's own pre-clip total norm, not the clipped one
        assert s["clip"]["norm"] == pytest.approx(lg["grad_norm"], rel=1e-5) and s["clip"]["coef"] < 1.0
