"""check(): the pre-flight audit - static checklist plus a probe at initialisation.

``check(model, example_inputs)`` maps the model (``ModelMap``: one traced forward,
the only one of the call), runs the static rules (``graddoctor.diagnose.checktime.static``)
and the init probe (``graddoctor.measure.probe``: one forward and backward, then
``graddoctor.diagnose.checktime.probe_rules``), and returns a ``Report(source="check")``
whose ``data`` holds the map summary and the probe's per-layer profile. The map itself
rides along as ``report.model_map`` (not serialised) so ``gd.repair`` need not trace
the model again. The rules receive what they judge; none calls back into ``check``.

It leaves no trace: parameters and ``p.grad`` are not touched (gradients are
taken with ``torch.autograd.grad``), train/eval flags, buffers (BatchNorm running
statistics) and the RNG state are restored, every hook is removed.

Example:
    >>> import torch
    >>> import graddoctor as gd
    >>> from graddoctor import zoo
    >>> report = gd.check(zoo.mlp(depth=20, activation="sigmoid"), torch.randn(16, 64))
    >>> sorted(report.codes)
    ['poor-init', 'saturating-hidden-activation', 'vanishing-gradient']
"""

from __future__ import annotations

import time
import warnings
from dataclasses import asdict
from pathlib import Path
from typing import Any

from torch import nn

from graddoctor.diagnose.checktime.attention import attention_init
from graddoctor.diagnose.checktime.closed_gate import closed_gate_at_init
from graddoctor.diagnose.checktime.frozen_part import frozen_part_info
from graddoctor.diagnose.checktime.measured import drop_contradicted
from graddoctor.diagnose.checktime.probe_rules import probe_findings
from graddoctor.diagnose.checktime.recurrence import recurrence
from graddoctor.diagnose.checktime.reused import reused_flow
from graddoctor.diagnose.checktime.softmax_loss import softmax_before_loss
from graddoctor.diagnose.checktime.static import static_findings
from graddoctor.diagnose.checktime.zero_ops import zero_derivative_cut
from graddoctor.errors import GraddoctorError, InputError, ModelCallError
from graddoctor.inputs import check_finite, check_probe_inputs, clone_tensors
from graddoctor.measure.distributed import unwrap
from graddoctor.measure.probe import ProbeResult
from graddoctor.measure.probe import probe as run_probe
from graddoctor.measure.probe_softmax import attention_entropy
from graddoctor.modelmap import ModelMap
from graddoctor.modelmap.support import require_supported
from graddoctor.report import Report


def check(
    model: nn.Module,
    example_inputs: Any,
    target: Any = None,
    loss_fn: Any = None,
    probe: bool = True,
    jacobian_k: int = 4,
) -> Report:
    """Audit ``model`` before training: static rules, then one probe at initialisation.

    Leaves no trace (parameters, ``p.grad``, buffers, modes and RNG state as they were).

    Args:
        model: any ``nn.Module`` (left exactly as it was); a ``torch.compile``,
            ``nn.DataParallel`` or DDP wrapper is audited through the module it wraps.
        example_inputs: a tensor, a tuple of positional tensors, or a dict of keyword
            tensors (Hugging Face style; with ``labels`` the model's own loss is probed).
        target: optional target for ``loss_fn`` (integer -> cross-entropy, float -> MSE
            when no ``loss_fn`` is given; ``[B, T, C]`` logits with a ``[B, T]`` target are
            flattened over time; lists/arrays are converted). A loss that fails on the
            output/target shapes is a one-line ``InputError`` naming both.
        loss_fn: optional ``loss_fn(output, target)``; without target and loss the probe
            backpropagates ``mean(output * R)``, R a fixed seeded N(0, 1) projection.
        probe: run the init probe (False: static rules only, no backward).
        jacobian_k: random projections for the Jacobian sketch (0 to skip).

    Returns:
        ``Report(source="check")``; ``report.data`` has ``map`` (layer counts, paths),
        ``probe`` (``ProbeResult.to_dict()``), ``attention`` (per attention softmax: ``name``,
            ``entropy``, ``keys``, ``rows``; only when the model has one) and ``seconds``; ``report.model_map`` is the
        ``ModelMap`` traced for it (an attribute, not serialised by ``to_dict``/``to_json``).

    Raises:
        InputError: ``model`` is not an ``nn.Module``, the inputs are not tensors, the loss
            fails on the output and target, or nothing can be differentiated.
        Exception: the model's own forward errors, and any error of a rule: a broken rule is
            never reported as "no findings".

    Example:
        >>> import torch
        >>> import graddoctor as gd
        >>> from torch import nn
        >>> net = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 2))
        >>> report = gd.check(net, torch.randn(4, 8))
        >>> report.ok, len(report.model_map.layers)
        (True, 2)
    """
    if not isinstance(model, nn.Module):
        raise InputError(f"check() needs an nn.Module, got {type(model).__name__}")
    model = unwrap(model)  # torch.compile / DataParallel / DDP: audit the module inside
    require_supported(model, "check")  # TorchScript, lazy or meta parameters: one line
    check_probe_inputs(example_inputs)
    if loss_fn is None:  # (your loss_fn may mask missing labels: then only its value is judged)
        check_finite(target, "the target")
    if isinstance(jacobian_k, bool) or not isinstance(jacobian_k, int) or jacobian_k < 0:
        raise InputError(f"check(): jacobian_k must be an int >= 0 (random projections; 0 skips the sketch), "
                         f"got {jacobian_k!r}")
    if any(True for _ in model.parameters()) and not any(p.requires_grad for p in model.parameters()):
        warnings.warn("graddoctor.check: the model has no trainable parameter (every one has "
                      "requires_grad=False): nothing in it would train - unfreeze the part you mean to "
                      "train (model.requires_grad_(True) for all of it)", stacklevel=2)
    t0 = time.perf_counter()
    m = ModelMap(model, clone_tensors(example_inputs))  # each forward gets its own copy of the inputs
    findings = static_findings(m, model) + closed_gate_at_init(model, m)
    data: dict[str, Any] = {"map": {
        "model": m.model_type, "layers": len(m.layers), "activation_sites": len(m.activations),
        "shortest_path": m.shortest_path, "longest_path": m.longest_path,
        "shortest_weight_path": m.shortest_weight_path, "longest_weight_path": m.longest_weight_path,
    }}
    if probe:
        p = _probe(model, example_inputs, target, loss_fn, m, jacobian_k)
        data["probe"] = p.to_dict()
        findings = drop_contradicted(findings, data["probe"]) + probe_findings(p, m, recurrent=recurrence(model, m))
        gated = {n for n, mod in model.named_modules() if isinstance(mod, (nn.LSTMCell, nn.GRUCell, nn.LSTM, nn.GRU))}
        cells = frozenset(n for n, mod in model.named_modules() if type(mod) is nn.RNNCell)
        findings += reused_flow(p, findings, gated, cells, m)
        findings = zero_derivative_cut(findings, p.zero_ops)
        softmaxes = [n for n, mod in model.named_modules() if isinstance(mod, nn.Softmax)]
        findings += [f for f in [softmax_before_loss(p, softmaxes)] if f is not None]
        sites = attention_entropy(model, clone_tensors(example_inputs))
        if sites:
            data["attention"] = [asdict(s) for s in sites]
            findings += [f for f in [attention_init(sites, model)] if f is not None]
    findings = frozen_part_info(findings, model, m)
    data["seconds"] = round(time.perf_counter() - t0, 3)
    report = Report(findings, source="check", data=data)
    report.model_map = m  # for gd.repair: one trace per verb call
    return report


def _probe(model: nn.Module, inputs: Any, target: Any, loss_fn: Any, m: ModelMap, jacobian_k: int) -> ProbeResult:
    """The init probe on copies of the inputs and target; an error of the model's backward is a
    one-line error naming it (the original chained), never a raw traceback."""
    try:
        return run_probe(model, clone_tensors(inputs), target=clone_tensors(target), loss_fn=loss_fn,
                         mmap=m, jacobian_k=jacobian_k)
    except GraddoctorError:
        raise
    except Exception as e:  # noqa: BLE001 - rewrapped in one line, original chained
        if _raised_in_graddoctor(e):
            raise  # our own bug: shown as it is, never blamed on the model
        msg = (str(e).strip().splitlines() or [""])[0]
        if "use_reentrant=True" in msg:
            raise InputError("check(): the model uses torch.utils.checkpoint(..., use_reentrant=True), which "
                             "the probe's torch.autograd.grad cannot run through - pass use_reentrant=False "
                             "to checkpoint, or check(..., probe=False) for the static rules only") from e
        raise ModelCallError(f"check(): the probe's backward through the model failed ({type(e).__name__}: "
                             f"{msg}) - a custom autograd Function or backward hook raised; fix it, or "
                             "check(..., probe=False) for the static rules only") from e


def _raised_in_graddoctor(e: BaseException) -> bool:
    """True when the innermost frame of ``e``'s traceback is graddoctor's own code."""
    tb = e.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return tb is not None and Path(tb.tb_frame.f_code.co_filename).resolve().is_relative_to(_PACKAGE)


_PACKAGE = Path(__file__).resolve().parents[1]


__all__ = ["check"]
