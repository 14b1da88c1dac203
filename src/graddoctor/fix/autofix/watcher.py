"""``AutofixWatcher``: a ``Watcher`` that repairs the user's model and optimizer in place.

``gd.watch(model, optimizer=opt, autofix=True)`` returns one. After each optimizer step (its
step post-hook: between two steps), every ``check_every`` steps, it judges the records since
attach or since the last fix (the window) with the training rules. Before ``warmup`` steps only
a blow-up (non-finite, or an exploding gradient that grew over steps) and a definite fault
count: BatchNorms in eval mode that normalise nothing (``actions.definite``), and, at the first
check only, an init fault found at attach (``initaudit.init_fault``: the ``poor-init``
audit of the attach-time weights on the example inputs, or on the first batch, at its forward,
before any step has moved them); after it, any
error finding with a gradient-flow cause (``actions.triggering``). From ``STRONG_FROM`` steps,
a strong dead-ReLU or saturation finding (``judge.strong``) seen at two checks in a row while
the run has learnt little (``judge.slow``) counts too. Any of these makes it
plan (the ``repair`` planner), apply the remedies in place (``actions.apply_fix``) and rebind
the optimizer's param groups (``surgery.rebind_optimizer``). A blow-up is rolled back to the
rollback point (``rollback.RollbackPoint``: the attach-time weights, moved forward at each
check where the run learns at its best level so far, so a late blow-up loses only the steps
since) with the learning rate divided by 10 (by 100 when its steps were as large as the weights:
``actions.lr_divisor``); a run that still fails after a blow-up fix is
rolled back again and the rate lowered again. A fix that re-draws the weights makes them the
new rollback point. A post-LN warm-up restarts from the point too (a stuck run never moved
it), and only where its tokens collapsed onto one vector early on (``collapse.CollapseGate``).
At most ``max_fixes`` rounds; the window restarts after each (the cool-down), so a fix is
judged on its own steps only. If the last round's window (judged after
the warm-up, a blow-up at once) still has a trigger, one event says so ("gave up") and autofix
stops reading the records.

Trial: any other fix is judged ``trial`` steps later (default ``TRIAL``; a new round before
then replaces it). If the loss level is no lower than its level before the fix
(``judge.helped``), and not a tie with the fix's causes gone from its window (``judge.no_worse``:
two stuck runs, the repaired one without the fault), the fix is **undone** (``undo.restore``: the
module tree, the weights, the train/eval flags and the learning rates as they were just before
it; its clip hooks removed and its warm-up stopped), reported, and autofix makes no further
round. A fix that helped stays (warm start); if the loss later gives back over ``judge.REGRESS_FRAC`` of its gain
at two checks in a row, the learning rate is divided by ``REGRESS_LR`` (a round).

Each round is one event in ``w.fixes`` and ``report().data["autofix"]``, and one warning line
("graddoctor.autofix: step 40: vanishing-gradient -> relu, he-init, rezero on 39 modules;
weights re-initialised"). An internal error warns once and turns autofix off; training goes on.
Autofix is off, with one warning, in a multi-process run (DDP/FSDP: a fix on rank 0 alone let
the replicas drift apart). Module surgery is refused with a one-line reason on DDP/FSDP, ``torch.compile``d and
TorchScript models, where the optimizer leaves out trainable parameters of the model (some, or
all: another model's optimizer), and on a model with none (optimizer-level remedies still apply;
``surgery.refusal``). Bad settings (``check_every=0``) are one ``InputError`` line
(``settings.check_settings``). Memory: one copy of the weights
(the rollback point, taken at attach and refreshed in place), and a second one while a fix is
on trial.

After a structural change the activation sampler is turned off for the rest of the run (its
sites were the old modules); gradient statistics go on (the parameters keep their identity).

Example:
    >>> import torch, graddoctor as gd
    >>> from torch import nn
    >>> net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    >>> opt = torch.optim.SGD(net.parameters(), lr=0.1)
    >>> with gd.watch(net, opt, autofix=True) as w:
    ...     for _ in range(3):
    ...         loss = net(torch.randn(8, 4)).pow(2).mean()
    ...         opt.zero_grad(); loss.backward(); opt.step(); w.step(loss)
    >>> type(w).__name__, w.fixes
    ('AutofixWatcher', [])
"""

from __future__ import annotations

import os
import warnings
from typing import Any

import torch
from torch import nn

from graddoctor.diagnose.training import training_findings
from graddoctor.diagnose.watching import Watcher
from graddoctor.errors import InputError
from graddoctor.fix.autofix.actions import (
    RESTART,
    apply_fix,
    blew_up,
    definite,
    depth_explosion,
    lower_lr,
    lr_divisor,
    passing_spike,
    plan_fix,
    triggering,
)
from graddoctor.fix.autofix.collapse import CollapseGate
from graddoctor.fix.autofix.events import family, fix_event, manual_steps
from graddoctor.fix.autofix.initaudit import InitAudit, causes_gone
from graddoctor.fix.autofix.judge import (
    REGRESS_FRAC,
    STRONG,
    doubtful,
    first_loss,
    learning,
    level,
    regressed,
    slow,
    strong,
    thinned,
)
from graddoctor.fix.autofix.repeats import drop_stale
from graddoctor.fix.autofix.rollback import RollbackPoint
from graddoctor.fix.autofix.settings import check_settings
from graddoctor.fix.autofix.surgery import (
    claim,
    off_when_distributed,
    rebind_optimizer,
    refusal,
    release,
)
from graddoctor.fix.autofix.trial import open_trial, undo_line, undo_trial, verdict
from graddoctor.fix.autofix.undo import Checkpoint
from graddoctor.fix.remedies.warmup import LinearWarmup
from graddoctor.measure.monitor.hooksafe import eager_only
from graddoctor.report import Finding, Report
from graddoctor.stack import user_level

#: steps recorded (since attach or the last fix) before a window is judged: the severity
#: policy needs 40 losses to call a run stuck (``diagnose/training/progress.py``)
WARMUP = 40
#: steps recorded before a strong slow cause (``judge.strong``, a warning or an error) can act:
#: it must show at two checks in a row and the run be slow (``judge.slow``). Autofix benchmark,
#: 5 seeds of the dead-ReLU faults: from 40 steps 27/30 fixed, from 20 steps 28/30 at lower cost
STRONG_FROM = 20
#: judge the window every this many steps
CHECK_EVERY = 10
#: ... and, in a long window, at most once every ``since // CHECK_SPAN`` steps: a check reads the
#: whole window since attach (or the last fix), so checking every 10 steps made a run quadratic
#: (a healthy 2-layer MLP, 2000 steps: 1.6 s plain, 34.7 s under autofix, 0.3 s a check at the
#: end). Unchanged up to ``CHECK_SPAN * CHECK_EVERY`` = 500 steps
CHECK_SPAN = 50
#: at most this many fix rounds per run
MAX_FIXES = 2
#: steps after a fix at which it is judged: a fix that re-draws the weights restarts the run,
#: and 40 steps were too few for a restarted net to pass the broken run's level (seed 0)
TRIAL = 80
#: the learning rate is divided by this when a repaired run regresses
REGRESS_LR = 3.0
_WHO = "graddoctor.autofix"
_STRUCTURAL = ("activation", "norm", "skip")
class AutofixWatcher(Watcher):
    """A ``Watcher`` that repairs in place between two steps (see the module docstring).

    Args:
        model, optimizer, log_dir, **kwargs: as for ``Watcher`` (the optimizer is required).
        autofix: True (every in-place remedy) or a list of remedy ids to restrict to.
        warmup, check_every, max_fixes: the trigger schedule and the cap on rounds.
        trial: steps after a fix at which it is judged (undone if the loss is no lower).
        seed: seed of the re-drawn weights (the user's RNG stream is not touched).

    Raises:
        InputError: no optimizer, a bad ``autofix`` value or a bad setting (``check_every=0``).
    """

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer | None = None,
                 log_dir: str | os.PathLike | None = None, *, autofix: Any = True, warmup: int = WARMUP,
                 check_every: int = CHECK_EVERY, max_fixes: int = MAX_FIXES, trial: int = TRIAL, seed: int = 0,
                 **kwargs: Any) -> None:
        if optimizer is None:
            raise InputError("autofix needs the optimizer: gd.watch(model, optimizer=opt, autofix=True) "
                             "(a fix rebinds its param groups)")
        self.allowed = check_settings(autofix, warmup=warmup, check_every=check_every, max_fixes=max_fixes,
                                      trial=trial, seed=seed)
        super().__init__(model, optimizer, log_dir, **kwargs)
        self.warmup, self.check_every, self.max_fixes, self.seed, self.trial = warmup, check_every, max_fixes, seed, trial
        self.fixes: list[dict] = []
        self._spent = max_fixes == 0  # the last round's outcome told (or no round allowed)
        self.autofix_failed: str | None = None
        self.refused = refusal(model, optimizer)
        self._since = 0  # the window judged starts after this step
        self._checked = 0  # the step of the last check
        self._point: RollbackPoint | None = None  # the blow-up rollback point
        self._fix_handles: list[Any] = []
        self._ramps: list[LinearWarmup] = []
        self._trial: dict | None = None  # the last fix, until its window says whether it helped
        self._levels: list[float] | None = None  # loss levels per check since a fix that helped
        self._warned: set[str] = set()  # warning codes at the previous check
        self._noop, self._manual = set[frozenset](), set[str]()  # cause sets said with no remedy; code changes
        self._audit = InitAudit(self.root, self.refused, self.forwards, user_level)  # poor-init at attach
        self._collapse = CollapseGate(self.root, self.forwards, enabled=self.refused is None)  # post-LN restarts

    def attach(self) -> AutofixWatcher:
        """Install the hooks (the watcher's, then the fix's post-step hook). Returns self."""
        was = self.attached
        super().attach()
        if not was and not off_when_distributed(self.world_size) and claim(self):
            self._point = self._point or RollbackPoint(self.root)
            if self._audit.faults is None and self.example_inputs is not None and \
                    not self._audit.look(self.example_inputs, given=True):
                self.example_inputs = None  # they do not fit: the first batch's forward is used
            self._fix_handles.append(self.optimizer.register_step_post_hook(torch.compiler.disable(self._safe_fix)))
            if self.example_inputs is None and self.forwards.hookable:
                self._fix_handles.append(self.root.register_forward_pre_hook(eager_only(self._audit.keep_inputs),
                                                                            with_kwargs=True))
            if self.refused:
                warnings.warn(f"{_WHO}: no module surgery on {self.refused}", stacklevel=user_level())
        return self

    def detach(self) -> None:
        """Remove the watcher's hooks (autofix's post-step hook and warm-up ramps too), flush and
        close (idempotent). The repairs stay: swapped modules, re-drawn weights, a lowered rate
        and a clip hook (one at most) are the fixed model and optimizer."""
        for h in self._fix_handles:
            h.remove()
        self._fix_handles.clear()
        release(self)
        for r in self._ramps:
            r.remove()
        super().detach()

    def report(self) -> Report:
        """The watcher's report, with the fix events in ``data["autofix"]``."""
        report = super().report()
        report.data["autofix"] = [dict(e) for e in self.fixes]
        return report

    def _safe_fix(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        if self.autofix_failed is not None or self.failed is not None or self._gate.paused or (
                len(self._rounds()) >= self.max_fixes and self._trial is None and self._spent):
            return  # nothing left to do (or graddoctor's own steps run: an LR sweep)
        try:
            self._maybe_fix()
        except Exception as e:  # noqa: BLE001 - never break the training loop
            self.autofix_failed = f"{type(e).__name__}: {e}"
            warnings.warn(f"{_WHO}: internal error ({self.autofix_failed}); autofix off from step "
                          f"{self._step}, training continues", stacklevel=user_level())
        finally:
            self.forwards.mapping = False

    def _maybe_fix(self) -> None:
        step = self._step
        if self._audit.faults is None:  # no example inputs and no forward of the root seen
            self._audit.look(self._audit.inputs)
        since = step - self._since
        if since % self.check_every or since < self.check_every or step - self._checked < since // CHECK_SPAN:
            return
        self._checked = step
        meta, steps = self.records()
        window = thinned([s for s in steps if s.get("step", 0) > self._since])
        self._collapse.look(step, meta, self._audit.inputs if self.example_inputs is None else self.example_inputs)
        findings = self._collapse.confirm(training_findings(meta, window))
        if (held := self._collapse.held_back()) is not None:  # one line: the report keeps the error
            self._log(step, [held[0]], [], {"added": 0, "dropped": 0, "reset": 0}, False, noop=True, not_collapsed=held[1])
        now = level(window)
        if self._trial is not None and since >= self._trial.get("due", self.trial) and \
                self._judge(step, now, findings, window):
            return  # the fix on trial did not help: it was undone
        if self._trial is None and self._levels is not None:
            self._levels.append(now)
        warned = {f.code for f in findings if f.severity in ("warning", "error") and strong(f)}
        persistent_codes, self._warned = warned & self._warned, warned
        # a dead-ReLU or saturation error acts only when strong (one site just past 50% dead is common)
        weak_ok = bool(self._rounds() and self._rounds()[-1]["blowup"])  # after a blow-up fix a weak sign counts
        causes = [f for f in triggering(findings) if (f.code not in STRONG or strong(f)) and (weak_ok or not doubtful(f))]
        if learning(window):  # a profile growing toward the input, a spike the run left, or (after a
            causes = [f for f in causes if not (depth_explosion(f) or passing_spike(f)  # blow-up fix)
                                                or (weak_ok and not blew_up([f])))]  # any sign but a blow-up
        if since < self.warmup:  # before the warm-up only a blow-up counts: it is harm in itself
            causes = [f for f in causes if blew_up([f])]
        if len(self._rounds()) >= self.max_fixes:
            self._last_word(step, causes, since)
            return
        if since >= STRONG_FROM and persistent_codes and slow(window):  # the same cause at two checks
            causes += [f for f in findings if f.severity in ("warning", "error") and f.code in persistent_codes
                       and strong(f) and f not in causes]
        causes += [f for f in definite(findings, self.root) if f not in causes]
        if not self.fixes and self._audit.faults:  # the first check: an init fault seen at attach
            init = self._audit.take(first_loss(steps), level(window, 3))
            causes, findings = causes + init, [*findings, *init]
        if not causes:
            if self._levels is not None and self._trial is None and regressed(self._levels):
                self._regressed(step)
            elif self._trial is None and self._point is not None:
                self._point.refresh(self.root, step, window, findings, now)
            return
        self._apply(step, findings, causes, now, lr_divisor(meta, window))

    def _apply(self, step: int, findings: list, causes: list, now: float, lr_div: float) -> None:
        # a blow-up fix that did not help (the run still fails): roll back and lower the rate again
        retry = bool(self._rounds() and self._rounds()[-1]["blowup"])
        blowup = blew_up(causes) or retry
        inputs = self.example_inputs if self.example_inputs is not None else self._audit.inputs
        plan = plan_fix(findings, self.root, inputs, self.optimizer, self.allowed, self.refused is None, blowup, retry)
        restart = blowup or any(s.remedy in RESTART for s in plan)
        plan, extra = (plan, {}) if restart else drop_stale(plan, self._rounds(), self._manual)  # repeats
        if not plan and not restart:  # reported once per set of causes; the window keeps growing
            if (codes := frozenset(f.code for f in causes)) not in self._noop:
                self._noop.add(codes)
                self._log(step, causes, [], {"added": 0, "dropped": 0, "reset": 0}, False, noop=True, **extra)
            return
        self._since, self._warned, self._levels = step, set(), None
        trial = None if blowup else open_trial(self._trial, lambda: Checkpoint(self.root), now, step,
                                               [g["lr"] for g in self.optimizer.param_groups])  # or joined
        self.forwards.mapping = True  # the remedies' traced forwards are not training forwards
        before, changes, reset = {id(p) for p in self.root.parameters()}, [], []
        if restart:
            assert self._point is not None  # taken at attach
            changes.append(self._point.restore(self.root))
            reset = list(self.root.parameters())
        if plan:
            done, redrawn = apply_fix(plan, self.root, self.optimizer, inputs, findings, self.seed,
                                      self._ramps, lr_div)
            changes += done
            reset += redrawn
        applied = [c for c in changes if c.kind == "applied"]
        self._manual |= {c.remedy for c in changes if c.kind == "manual"}
        counts = rebind_optimizer(self.optimizer, self.root, before, reset)
        if any(family(c.remedy) in _STRUCTURAL for c in applied):
            self._stop_sampler()
        if self._point is not None:
            self._point.new_window()
            if any(family(c.remedy) == "init" for c in applied):  # the re-drawn weights are the new
                self._point.restart(self.root, step)  # start: a later blow-up rolls back to them
        if trial is not None and applied:
            self._trial = {**trial, "changes": [*trial.get("changes", []), *applied], "index": len(self.fixes),
                           "restart": restart or trial.get("restart", False)}
        self._log(step, causes, applied, counts, blowup, manual=manual_steps(changes))

    def _last_word(self, step: int, left: list[Finding], since: int) -> None:
        """After the last round, once no fix is on trial and its window is judged (a blow-up at
        once): if causes are ``left`` (as a round would read them), say so once ("gave up"
        event); then stop reading."""
        if self._trial is not None or (since < self.warmup and not left):
            return
        self._spent = True
        if left and self.max_fixes:
            self._log(step, left, [], {"added": 0, "dropped": 0, "reset": 0}, False, noop=True,
                      gave_up=len(self._rounds()))

    def _rounds(self) -> list[dict]:
        """The fix rounds so far (events that changed something; an undo is not a round)."""
        return [e for e in self.fixes if not e.get("undo") and not e.get("noop")]

    def _judge(self, step: int, now: float, findings: list[Finding], window: list[dict]) -> bool:
        """Judge the fix on trial at the end of its window (``trial.verdict``); undo it if it did
        not help (True). A restart (weights back at the init, a warm-up) removes its cause by
        construction: kept only when the loss fell (a healthy BART on a 120-step task plateau,
        restarted at step 50, sat at 4.12 for 250 steps "its causes gone")."""
        t, self._trial = self._trial, None
        event = self.fixes[t["index"]]
        judged = [e for e in self.fixes if e.get("step") in t["steps"][:-1] and e is not event] + [event]
        inputs = self.example_inputs if self.example_inputs is not None else self._audit.inputs
        self.forwards.mapping = True  # causes_gone may trace the model (the init audit)
        gone = not t["restart"] and causes_gone(event["codes"], findings, self.root, inputs)
        said = verdict(t, now, gone, window)
        if said == "again":  # slow, not wrong: judged again one window later
            self._trial = {**t, "last": now, "due": step - self._since + self.trial}
            return False
        if said != "undo":
            how = "helped" if said == "helped" else "kept (its causes are gone, the loss no higher)"
            for e in judged:
                e["verdict"] = f"{how}: loss {t['before']:.4g} -> {now:.4g} by step {step}"
            # the regression guard measures the gain from the level before the fix (a wobble of a
            # few hundredths after the trial is not "giving back half the gain")
            self._levels = [t["before"]] if t["before"] < float("inf") else []
            return False
        counts = undo_trial(t, self.root, self.optimizer, self._ramps)
        self._stop_sampler()
        for e in judged:
            e["verdict"] = f"did not help: loss {t['before']:.4g} -> {now:.4g} by step {step}; undone"
        line = undo_line(t, step, now)
        self.max_fixes, self._spent = 0, True  # no further rounds: the run goes on as the user wrote it
        undo = {"step": step, "codes": event["codes"], "remedies": ["undo"], "modules": event["modules"],
                "optimizer": counts, "message": line, "blowup": False, "undo": t["step"], "undone": t["steps"],
                "changes": []}
        self._add_event(undo, [])
        return True

    def _regressed(self, step: int) -> None:
        """After a fix that helped, the loss rose well above its best: lower the rate (a round)."""
        self._since, self._warned, self._levels = step, set(), None
        change = lower_lr(self.optimizer, REGRESS_LR, f"after the fix the loss gave back over {REGRESS_FRAC:.0%} "
                          "of its gain at two checks: the repaired net is unstable at this rate")
        counts = {"added": 0, "dropped": 0, "reset": 0}
        regress = Finding("exploding-gradient", "warning", change.why, [], {"regressed": True})
        self._log(step, [regress], [change], counts, False)

    def _stop_sampler(self) -> None:
        if self.forwards.sampler is not None:
            self.forwards.sampler.close()
            self.forwards.sampler = None  # its sites were the old modules

    def _log(self, step: int, causes: list, applied: list, counts: dict, blowup: bool, **extra: Any) -> None:
        self._add_event(fix_event(step, causes, applied, counts, blowup, **extra), causes)

    def _add_event(self, event: dict, causes: list) -> None:
        """One event: ``w.fixes``, the run log (one line, flushed), the report, a warning line."""
        self.fixes.append(event)
        self.log_event("autofix", event, causes)
        warnings.warn(f"{_WHO}: {event['message']}", stacklevel=user_level())


__all__ = ["CHECK_EVERY", "MAX_FIXES", "TRIAL", "WARMUP", "AutofixWatcher"]
