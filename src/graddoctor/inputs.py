"""Calling a model on example inputs given as a tensor, a tuple, or a dict of kwargs.

Example:
    >>> import torch
    >>> from graddoctor.inputs import call_model
    >>> call_model(torch.nn.Linear(3, 2), torch.zeros(4, 3)).shape
    torch.Size([4, 2])
"""

from __future__ import annotations

import dataclasses
import inspect
import re
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn
from torch.utils._pytree import tree_flatten, tree_map

from graddoctor.errors import InputError, ModelCallError

ExampleInputs = torch.Tensor | tuple | list | Mapping


def bind_call(module: nn.Module, args: tuple, kwargs: dict) -> dict | None:
    """A forward call's positional and keyword arguments as one keyword dict, bound to the
    module's ``forward`` signature (``model(ids, labels=ids)`` -> ``{"input_ids": ..., "labels": ...}``);
    None when they do not bind, the signature takes ``*args`` or binds a positional-only parameter.

    Example:
        >>> sorted(bind_call(nn.Bilinear(2, 2, 1), (torch.ones(1, 2),), {"input2": torch.ones(1, 2)}))
        ['input1', 'input2']
        >>> class Scaled(nn.Module):
        ...     def forward(self, x, /, scale=1.0):
        ...         return x * scale
        >>> bind_call(Scaled(), (torch.ones(1),), {"scale": 2.0}) is None  # x is positional-only
        True
    """
    try:
        sig = inspect.signature(module.forward)
        if any(p.kind is p.VAR_POSITIONAL for p in sig.parameters.values()):
            return None
        bound = sig.bind(*args, **kwargs)
    except (TypeError, ValueError):
        return None
    if any(sig.parameters[k].kind is sig.parameters[k].POSITIONAL_ONLY for k in bound.arguments):
        return None  # forward(self, x, /, ...): x cannot be passed by keyword
    out = {k: v for k, v in bound.arguments.items() if sig.parameters[k].kind is not sig.parameters[k].VAR_KEYWORD}
    extra = next((v for k, v in bound.arguments.items() if sig.parameters[k].kind is sig.parameters[k].VAR_KEYWORD), {})
    return {**out, **extra}


def call_model(model: nn.Module, inputs: Any) -> Any:
    """Run ``model`` on ``inputs``: a tensor -> model(x), tuple/list -> model(*x), dict -> model(**x).

    A failure inside the forward becomes a one-line ``ModelCallError``.
    """
    check_inputs(inputs)
    try:
        if isinstance(inputs, Mapping):
            return model(**inputs)
        if isinstance(inputs, (tuple, list)):
            return model(*inputs)
        return model(inputs)
    except Exception as e:  # noqa: BLE001 - rewrapped with context, original chained
        msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise ModelCallError(
            f"the model's forward failed on the example inputs ({_describe(inputs)}): "
            f"{type(e).__name__}: {msg} - {_fix_hint(e, msg)}"
        ) from e


def _fix_hint(e: Exception, msg: str) -> str:
    """What to change for the common failures: a missing argument, float ids, else shape/dtype.

    Example:
        >>> _fix_hint(TypeError(), "forward() missing 1 required positional argument: 'labels'")
        "pass every argument forward needs: a tuple (x, labels) in order, or a dict {'labels': ...}"
    """
    missing = re.search(r"missing \d+ required positional arguments?: (.+)$", msg)
    if isinstance(e, TypeError) and missing:
        names = re.findall(r"'(\w+)'", missing.group(1))
        return ("pass every argument forward needs: a tuple (x, " + ", ".join(names) + ") in order, or a dict {"
                + ", ".join(f"'{n}': ..." for n in names) + "}")
    if "Long, Int" in msg and "Float" in msg:  # an embedding given float ids
        return "token ids must be integers: pass a LongTensor (on the CLI: --dtype long)"
    if ("same dtype" in msg or "expected" in msg) and "Double" in msg and "Float" in msg:  # float32 into float64
        return "inputs and weights differ in dtype: give inputs of the weights' dtype (on the CLI: --dtype float64)"
    if "invalid data type 'str'" in msg:  # batch["x"] on a tensor
        return ("the forward indexes its input with a string key, so it takes a dict: pass (inputs_dict,) - from a "
                "CLI factory, return (model, ({'x': ...},))")
    unexpected = re.search(r"got an unexpected keyword argument '(\w+)'", msg)
    if isinstance(e, TypeError) and unexpected:  # a dict was spread into keyword arguments
        return ("a dict of inputs is passed as keyword arguments (model(**inputs)); for a forward that takes "
                "the dict itself, give a one-element tuple: (inputs,) - from a CLI factory, return (model, (inputs,))")
    if "Expected more than 1 value per channel when training" in msg:  # BatchNorm on one sample
        return "BatchNorm in training mode needs 2 or more samples: pass a batch of 2+ (or the model in eval())"
    if "exactly one of input_ids or inputs_embeds" in msg or "decoder_input_ids" in msg:  # an encoder-decoder
        return ("an encoder-decoder (T5, BART) needs its decoder's input too: pass labels=... (or "
                "decoder_input_ids=...) next to input_ids; any other model: pass input_ids")
    return "check the input shape/dtype the model expects"


def leaves(tree: Any) -> list[Any]:
    """The leaves of nested tuples, lists, dicts and dataclasses; other containers through torch's pytree.

    A hand-written walk for the common cases: ModelMap calls it for every torch op of a
    trace, where ``tree_flatten`` cost more than the op itself.

    Example:
        >>> leaves(({"a": 1}, [2, (3,)], 4))
        [1, 2, 3, 4]
    """
    if isinstance(tree, torch.Tensor):
        return [tree]
    if isinstance(tree, (tuple, list)):
        items: Any = tree
    elif isinstance(tree, dict):
        items = tree.values()
    elif tree is None or isinstance(tree, (bool, int, float, str)):
        return [tree]
    elif dataclasses.is_dataclass(tree) and not isinstance(tree, type):
        items = [getattr(tree, f.name) for f in dataclasses.fields(tree)]
    else:
        return tree_flatten(tree)[0]
    out: list[Any] = []
    for x in items:
        if isinstance(x, torch.Tensor):
            out.append(x)
        elif isinstance(x, (tuple, list, dict)) or (dataclasses.is_dataclass(x) and not isinstance(x, type)):
            out.extend(leaves(x))
        else:
            out.append(x)
    return out


def check_inputs(inputs: Any) -> None:
    """Raise a one-line ``InputError`` unless ``inputs`` holds at least one tensor."""
    if not any(isinstance(x, torch.Tensor) for x in leaves(inputs)):
        raise InputError(
            f"example inputs must be a tensor, a tuple of tensors or a dict of tensors, got {_describe(inputs)}"
        )


def check_probe_inputs(inputs: Any) -> None:
    """Raise a one-line ``InputError`` when the inputs ``check`` probes with cannot measure the
    model: no sample at all (every tensor empty), or NaN/+Inf in a floating tensor (the data's
    fault, which the probe would blame on the model as a signal overflow).

    Example:
        >>> check_probe_inputs(torch.ones(2, 3))
        >>> check_probe_inputs(torch.full((2, 3), float("nan")))
        Traceback (most recent call last):
        ...
        graddoctor.errors.InputError: the example inputs: 6 NaN/Inf value(s) in a tensor of shape (2, 3) - ...
    """
    check_inputs(inputs)
    tensors = [x for x in leaves(inputs) if isinstance(x, torch.Tensor)]
    if all(x.numel() == 0 for x in tensors):
        shapes = ", ".join(str(tuple(x.shape)) for x in tensors[:3])
        raise InputError(f"the example inputs are empty (shape {shapes}): check needs at least one sample "
                         "- pass a real batch")
    if meta := [x for x in tensors if x.is_meta]:
        raise InputError(f"the example inputs hold a tensor on the meta device (shape {tuple(meta[0].shape)}), "
                         "which has no values - pass a real batch (on the model's device)")
    check_finite(inputs, "the example inputs")


def check_finite(tree: Any, what: str) -> None:
    """Raise a one-line ``InputError`` when a floating tensor in ``tree`` holds NaN or +Inf (-Inf is
    left alone: an additive attention mask holds it on purpose): the data's fault, which the probe
    would blame on the model.

    Example:
        >>> check_finite({"y": torch.tensor([1.0, float("nan")])}, "the target")
        Traceback (most recent call last):
        ...
        graddoctor.errors.InputError: the target: 1 NaN/Inf value(s) in a tensor of shape (2,) - ...
    """
    for x in (x for x in leaves(tree) if isinstance(x, torch.Tensor)):
        if x.is_floating_point() and (bad := int((torch.isnan(x) | torch.isposinf(x)).sum())):
            raise InputError(f"{what}: {bad} NaN/Inf value(s) in a tensor of shape {tuple(x.shape)} - "
                             "the data is at fault, not the model - clean the batch (torch.nan_to_num, or find "
                             "the bad samples in the loader)")


def first_tensor(tree: Any) -> torch.Tensor | None:
    """The first tensor found in a nested structure (model outputs, HF ModelOutput, ...).

    Example:
        >>> first_tensor({"a": 1, "b": (torch.ones(2), torch.zeros(1))}).tolist()
        [1.0, 1.0]
    """
    return next(iter(output_tensors(tree)), None)


def output_tensors(tree: Any) -> list[torch.Tensor]:
    """All tensors in a nested output structure: tuples, lists, dicts, namedtuples,
    dataclasses and HF ModelOutput, nested in any order.

    Example:
        >>> import dataclasses
        >>> @dataclasses.dataclass
        ... class Out:
        ...     logits: torch.Tensor
        ...     extra: dict
        >>> len(output_tensors(Out(torch.ones(1), {"a": [torch.zeros(1)]})))
        2
    """
    if isinstance(tree, torch.Tensor):
        return [tree]
    if hasattr(tree, "to_tuple"):
        tree = tree.to_tuple()
    elif dataclasses.is_dataclass(tree) and not isinstance(tree, type):
        tree = [getattr(tree, f.name) for f in dataclasses.fields(tree)]
    if isinstance(tree, Mapping):
        tree = list(tree.values())
    if isinstance(tree, (tuple, list)):
        return [t for x in tree for t in output_tensors(x)]
    return [x for x in leaves(tree) if isinstance(x, torch.Tensor)]


def clone_tensors(tree: Any) -> Any:
    """``tree`` with every tensor cloned (any dtype, nested in tuples, lists, dicts,
    namedtuples), so a model that changes its inputs in place cannot change the caller's.
    Leaf tensors keep ``requires_grad``; other objects are shared.

    Example:
        >>> x = {"ids": torch.ones(2, dtype=torch.long), "rest": (torch.zeros(1),)}
        >>> y = clone_tensors(x)
        >>> _ = y["ids"].mul_(5); x["ids"].tolist(), y["rest"][0] is x["rest"][0]
        ([1, 1], False)
    """
    def clone(t: Any) -> Any:
        if not isinstance(t, torch.Tensor):
            return t
        c = t.detach().clone()
        return c.requires_grad_(True) if t.requires_grad and c.is_floating_point() else c

    return tree_map(clone, tree)


def _describe(inputs: Any) -> str:
    if isinstance(inputs, torch.Tensor):
        return f"tensor {tuple(inputs.shape)} {str(inputs.dtype).replace('torch.', '')}"
    if isinstance(inputs, Mapping):
        return "dict(" + ", ".join(f"{k}={_describe(v)}" for k, v in inputs.items()) + ")"
    if isinstance(inputs, (tuple, list)):
        return "(" + ", ".join(_describe(v) for v in inputs) + ")"
    return type(inputs).__name__
