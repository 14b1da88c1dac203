"""A run that dies keeps its steps: a plain loop that never detached writes its buffered steps at the
interpreter's exit (an uncaught exception, Ctrl-C, ``sys.exit``), and a Hugging Face ``train()``
that raised (the Trainer has no exception event) is closed by the next ``on_train_begin`` on its
model: its steps written, its hooks removed."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from graddoctor.runlog import read_run

_SCRIPT = """
import os, signal, sys
import torch, torch.nn.functional as F
import graddoctor as gd
signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal (a background job ignores it)
torch.manual_seed(0)
m = torch.nn.Sequential(torch.nn.Linear(10, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))
opt = torch.optim.SGD(m.parameters(), lr=0.1)
w = gd.watch(m, opt, log_dir=sys.argv[1])  # no `with`, no detach
for s in range(100):
    x, y = torch.randn(16, 10), torch.randint(0, 3, (16,))
    loss = F.cross_entropy(m(x), y); opt.zero_grad(); loss.backward(); opt.step(); w.step(loss)
    if s + 1 == 37:
        if sys.argv[2] == "raise": raise ValueError("user crash")
        if sys.argv[2] == "sigint": os.kill(os.getpid(), signal.SIGINT)
        if sys.argv[2] == "exit": sys.exit(3)
"""


@pytest.mark.parametrize("how, rc", [("raise", 1), ("sigint", -2)])  # (sys.exit: the same exit path)
def test_a_loop_that_never_detached_keeps_its_steps_when_it_dies(tmp_path, how, rc):
    script = tmp_path / "train.py"
    script.write_text(_SCRIPT)
    proc = subprocess.run([sys.executable, str(script), str(tmp_path / "run"), how],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == rc or (how == "sigint" and proc.returncode == 130), proc.stderr
    assert ("ValueError: user crash" if how == "raise" else "KeyboardInterrupt") in proc.stderr  # as it was
    meta, steps = read_run(tmp_path / "run")
    assert [s["step"] for s in steps] == list(range(1, 38))  # flush_every=50: none flushed before exit
    assert all(s["loss"] is not None for s in steps)


def test_a_trainer_that_raised_is_closed_by_the_next_train_on_its_model(tmp_path):
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("accelerate")
    from graddoctor.integrations.transformers import GradDoctorCallback

    class Raising(transformers.Trainer):
        def training_step(self, model, inputs, num_items_in_batch=None):
            if self.state.global_step == 6:
                raise RuntimeError("user bug")
            return super().training_step(model, inputs, num_items_in_batch)

    torch.manual_seed(0)
    cfg = transformers.GPT2Config(vocab_size=32, n_positions=16, n_embd=16, n_layer=1, n_head=2)
    model = transformers.GPT2LMHeadModel(cfg)
    ids = torch.randint(0, 32, (64, 8), generator=torch.Generator().manual_seed(0))
    data = [{"input_ids": r, "labels": r.clone()} for r in ids]

    def args(name):
        return transformers.TrainingArguments(
            output_dir=str(tmp_path / f"{name}_out"), per_device_train_batch_size=4, logging_steps=1, max_steps=10,
            use_cpu=True, report_to=[], save_strategy="no", disable_tqdm=True, gradient_accumulation_steps=2)

    def grad_hooks():
        return sum(len(p._post_accumulate_grad_hooks or {}) for p in model.parameters())

    first = GradDoctorCallback(tmp_path / "first")
    with pytest.raises(RuntimeError, match="user bug"):
        Raising(model=model, args=args("a"), train_dataset=data, callbacks=[first]).train()
    assert first.watcher.attached and grad_hooks() > 0  # what the Trainer leaves: no event tells us
    second = GradDoctorCallback(tmp_path / "second")
    transformers.Trainer(model=model, args=args("b"), train_dataset=data, callbacks=[second]).train()
    assert not first.watcher.attached and not second.watcher.attached
    assert grad_hooks() == 0
    assert [s["step"] for s in read_run(tmp_path / "first")[1]] == list(range(1, 7))
    assert [s["step"] for s in read_run(tmp_path / "second")[1]] == list(range(1, 11))
