"""The traced forward: one pass on example inputs records module calls, layers and activation sites.

Hooks on every module see the calls; a ``TorchFunctionMode`` sees functional activations
(``F.relu``, ``torch.sigmoid``, ``x.tanh()``) and the other torch calls; data-flow tags
(``graddoctor.modelmap.tags``) follow each layer's output to the first activation applied to it
and count the layers along the path. Hooks and tags are removed afterwards, also when the
forward raises; the model's train/eval mode, buffers and RNG state are restored.

Example:
    >>> import torch
    >>> from torch import nn
    >>> t = trace(nn.Sequential(nn.Linear(2, 2), nn.Tanh()), torch.randn(1, 2))
    >>> [(x.name, x.activation) for x in t.layers], t.longest_path
    ([('0', 'tanh')], 1)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from graddoctor import kinds
from graddoctor.inputs import call_model, first_tensor, output_tensors
from graddoctor.modelmap.names import module_names
from graddoctor.modelmap.records import ActivationSite, Layer, ModuleCall, layer_kind
from graddoctor.modelmap.scale import ScaleFlow
from graddoctor.modelmap.state import mha_fastpath_disabled, restored_state
from graddoctor.modelmap.tags import (
    EMPTY,
    Tag,
    clear_tags,
    input_tag,
    merge,
    set_tag,
    tag_inputs,
    tag_of,
)

_MUL_NAMES = {"mul", "mul_", "__mul__", "__rmul__", "__imul__", "multiply", "addcmul", "addcmul_"}
_DIV_NAMES = {"div", "div_", "__truediv__", "__itruediv__", "true_divide", "true_divide_", "divide"}

Shape = tuple[int, ...] | None
# what a query returns (``x.shape``, ``x.numel()``, ``x.is_floating_point()``: most calls a trace
# sees, the hooks' own included); no tensor in it, so no tag or activation to record
_QUERY_RESULTS = (bool, int, float, str, torch.Size, torch.dtype, torch.device)


def function_activation_kind(func: Callable) -> str | None:
    """The activation kind of a torch function seen by a TorchFunctionMode, or None.

    Args:
        func: the function a ``TorchFunctionMode`` received (``F.relu``, ``Tensor.tanh_``, ...).

    Returns:
        The kind (``graddoctor.kinds``) its name says, for functions of torch only; None otherwise.

    Example:
        >>> import torch.nn.functional as F
        >>> function_activation_kind(F.relu), function_activation_kind(torch.Tensor.tanh)
        ('relu', 'tanh')
    """
    module = getattr(func, "__module__", None) or ""
    if not module.startswith("torch") and module != "":
        return None
    name = getattr(func, "__name__", "").rstrip("_")
    return name if name in kinds.KINDS else None


class FunctionalActivationMode(TorchFunctionMode):
    """Sees functional activations (``F.relu``, ``torch.sigmoid``, ``x.tanh()``, ...).

    The owner module is whatever the caller tracks. Reusable by watch's activation statistics.

    Args:
        on_activation: called as ``(kind, args, out)`` for each functional activation that does
            not run inside an activation module.
        in_activation_module: says whether an activation module is running now.
        on_op: called as ``(func, args, kwargs, out)`` for every other torch call, if given.
        on_read: called as ``(args, kwargs)`` for every call that reads values (a tensor out, or
            ``.item()``), if given; not for queries (HF's ``model.dtype`` reads a parameter's dtype).

    Example:
        >>> seen = []
        >>> with FunctionalActivationMode(lambda k, a, o: seen.append(k), lambda: False):
        ...     _ = torch.ones(2).sigmoid() + 1
        >>> seen
        ['sigmoid']
    """

    def __init__(
        self,
        on_activation: Callable[[str, tuple, Any], None],
        in_activation_module: Callable[[], bool],
        on_op: Callable[[Callable, tuple, dict, Any], None] | None = None,
        on_read: Callable[[tuple, dict], None] | None = None,
    ) -> None:
        super().__init__()
        self.on_activation = on_activation
        self.in_activation_module = in_activation_module
        self.on_op = on_op
        self.on_read = on_read

    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if self.on_read and (out is not None and not isinstance(out, _QUERY_RESULTS) or func is torch.Tensor.item):
            self.on_read(args, kwargs)
        if out is None or isinstance(out, _QUERY_RESULTS):  # .shape, .numel(), ...: nothing to follow
            return out
        kind = function_activation_kind(func)
        if kind is not None and not self.in_activation_module():
            self.on_activation(kind, args, out)
        elif self.on_op is not None:
            self.on_op(func, args, kwargs, out)
        return out


@dataclass
class Trace:
    """What one traced forward found (``ModelMap`` holds these fields; see its docstring)."""

    calls: list[ModuleCall] = field(default_factory=list)
    layers: list[Layer] = field(default_factory=list)
    activations: list[ActivationSite] = field(default_factory=list)
    shared: list[str] = field(default_factory=list)
    uncalled: list[str] = field(default_factory=list)
    unread: list[str] = field(default_factory=list)
    shortest_path: int = 0
    longest_path: int = 0
    shortest_weight_path: int = 0
    longest_weight_path: int = 0
    module_shapes: dict[str, tuple[Shape, Shape]] = field(default_factory=dict)


def _shape(tree: Any) -> Shape:
    """The shape of the first tensor in ``tree``. Fast path (called for every module call of a
    trace): the first leaf, found by following first elements, is that tensor when it is one."""
    head = tree
    while isinstance(head, (tuple, list)) and head:
        head = head[0]
    t = head if isinstance(head, torch.Tensor) else first_tensor(tree)
    return tuple(t.shape) if t is not None else None


class _Tracer:
    """The hooks and the function-mode callbacks of one trace, and what they found so far."""

    def __init__(self, model: nn.Module) -> None:
        self.found = Trace()
        self.names = module_names(model)  # first name a shared module was registered under
        self.owners = {m for m in self.names if any(True for _ in m.parameters(recurse=False))}
        self.act_kinds = {m: kinds.of_module(m) for m in self.names}
        self.tracked = {m for m in self.names
                        if not any(True for _ in m.children()) or m in self.owners or self.act_kinds[m]}
        self.layer_by_name: dict[str, Layer] = {}
        self.layer_index: dict[str, int] = {}
        self.site_by_name: dict[str, ActivationSite] = {}
        self.tagged: list = []  # weak references to every tensor tagged (see tags.clear_tags)
        self.stack: list[nn.Module] = []
        self.layer_calls = 0
        self.layer_calls_at_entry: list[int] = []
        self.fn_counter: dict[tuple[str, str], int] = {}
        self.call_counter: dict[nn.Module, int] = {}
        self.scale = ScaleFlow()  # which layers' output size the model ignores (modelmap.scale)
        self.norms = {m for m in self.owners if layer_kind(m) == "norm"}
        self.param_owners: dict[int, list[nn.Module]] = {}  # parameter id -> its owners (tied: several)
        for m in self.owners:
            for p in m.parameters(recurse=False):
                self.param_owners.setdefault(id(p), []).append(m)
        self.read: set[nn.Module] = set()  # owners of a parameter some torch call read (not .dtype)
        self.tagged_data = False  # some floating-point input carries a tag (set by ``trace``)

    # ---- activations

    def in_activation_module(self) -> bool:
        return bool(self.stack) and self.act_kinds.get(self.stack[-1]) is not None

    def on_functional(self, kind: str, args: tuple, out: Any) -> None:
        owner = self.names[self.stack[-1]] if self.stack else ""
        i = self.fn_counter.get((owner, kind), 0)
        self.fn_counter[(owner, kind)] = i + 1
        self.record_activation(f"{owner or 'model'}/{kind}#{i}", kind, True, owner, args, out)

    def record_activation(self, name: str, kind: str, functional: bool, owner: str, args: Any, out: Any) -> None:
        site = self.site_by_name.get(name)
        if site is None:
            site = ActivationSite(name, kind, kinds.get(kind).family, functional, owner)
            self.site_by_name[name] = site
            self.found.activations.append(site)
        site.calls += 1
        site.output_shape = _shape(out)
        tag = input_tag(args)
        if tag is None:
            return
        site.after_layer = site.after_layer or (tag.hi > 0 and not tag.const)  # fed by the data through a layer
        for lname in tag.pending:
            layer = self.layer_by_name[lname]
            if layer.activation is None:
                layer.activation, layer.activation_site = kind, name
        hom = self.scale.activation(kind, tag.hom)
        set_tag(out, Tag(tag.lo, tag.hi, EMPTY, tag.src, tag.acts | {name}, tag.wlo, tag.whi, tag.cap, tag.up, hom,
                         tag.const), self.tagged)

    def on_read(self, args: tuple, kwargs: dict) -> None:
        """Note the owners of the parameters a torch call takes (also inside a list: ``torch.cat``)."""
        for a in (*args, *kwargs.values()):
            for t in (a if isinstance(a, (list, tuple)) else (a,)):
                self.read.update(self.param_owners.get(id(t), ()) if isinstance(t, nn.Parameter) else ())

    def on_op(self, func: Callable, args: tuple, kwargs: dict, out: Any) -> None:
        tag = input_tag((args, kwargs))
        if tag is None:
            return
        name, cap = getattr(func, "__name__", ""), None
        c = float(args[1]) if len(args) == 2 and type(args[1]) in (int, float) and not kwargs else None
        if name in _MUL_NAMES:
            self.mark_gates(args)
            if c is not None and tag.cap is not None:
                self.mark_capped(tag, c)
            elif c is not None and 0 < c < 1:
                cap = 1 / c
        elif name in _DIV_NAMES and c is not None and c > 1:
            cap = c
        inside = self.stack and (self.stack[-1] in self.norms or self.act_kinds.get(self.stack[-1]))
        hom = tag.hom if inside else self.scale.op(name, args, kwargs, tag.hom)  # a norm's inside: as a whole
        if cap is not None or tag.cap is not None or hom != tag.hom:
            tag = replace(tag, cap=cap, hom=hom)
        set_tag(out, tag, self.tagged)

    def mark_capped(self, tag: Tag, c: float) -> None:
        """``c * tanh(x / c)`` is a soft cap: the identity well inside +-c (attention logits of Gemma 2,
        about 0.1 against a cap of 50 at init) that only bounds outliers; no hidden activation."""
        if not math.isclose(c, tag.cap or 0.0, rel_tol=1e-6):
            return
        for sname in tag.acts:
            site = self.site_by_name.get(sname)
            if site is not None and site.family == "saturating":
                site.capped = True

    def mark_gates(self, args: tuple) -> None:
        """Saturating sites whose output multiplies another input-derived tensor are gates."""
        tags = [t for t in map(tag_of, args) if t is not None]
        if len(tags) < 2:  # a product with a constant or a parameter is a scale, not a gate
            return
        for i, t in enumerate(tags):
            others = frozenset().union(*(u.acts for j, u in enumerate(tags) if j != i))
            for sname in t.acts - others:
                site = self.site_by_name.get(sname)
                if site is not None and site.family == "saturating":
                    site.gate = True

    # ---- module hooks

    def pre_hook(self, module: nn.Module, args: Any, kwargs: Any) -> None:
        self.stack.append(module)
        self.layer_calls_at_entry.append(self.layer_calls)
        if len(self.stack) == 1:  # a new top-level forward: functional sites count from 0 again
            self.fn_counter.clear()

    def post_hook(self, module: nn.Module, args: Any, kwargs: Any, out: Any) -> None:
        if self.stack and self.stack[-1] is module:
            self.stack.pop()
        entry_calls = self.layer_calls_at_entry.pop() if self.layer_calls_at_entry else 0
        name = self.names[module]
        first = name not in self.found.module_shapes
        if module not in self.tracked:
            if first:
                self.found.module_shapes[name] = (_shape((args, kwargs)), _shape(out))
            return
        self.call_counter[module] = self.call_counter.get(module, 0) + 1
        if self.call_counter[module] == 2:
            self.found.shared.append(name)
        in_shape, out_shape = _shape((args, kwargs)), _shape(out)
        if first:
            self.found.module_shapes[name] = (in_shape, out_shape)
        self.found.calls.append(ModuleCall(len(self.found.calls), name, type(module).__name__, in_shape,
                                           out_shape, module in self.owners))
        kind = self.act_kinds[module]
        if kind is not None:
            self.record_activation(name, kind, False, name, (args, kwargs), out)
        elif module in self.owners:
            self.record_layer(module, name, (args, kwargs), out, in_shape, out_shape, entry_calls)

    def record_layer(self, module: nn.Module, name: str, inputs: Any, out: Any,
                     in_shape: Shape, out_shape: Shape, entry_calls: int) -> None:
        layer = self.layer_by_name.get(name)
        if layer is None:
            params = [f"{name}.{p}" if name else p for p, _ in module.named_parameters(recurse=False)]
            layer = Layer(name, type(module).__name__, layer_kind(module), params,
                          sum(p.numel() for p in module.parameters(recurse=False)))
            self.layer_by_name[name] = layer
            self.layer_index[name] = len(self.found.layers)
            self.found.layers.append(layer)
        layer.calls += 1
        layer.input_shape = layer.input_shape or in_shape
        layer.output_shape = out_shape
        self.layer_calls += 1
        if self.layer_calls > entry_calls + 1:  # a parent with its own params around child layers
            tag = input_tag(out)
            if tag is not None:
                layer.depth, layer.min_depth = max(layer.depth, tag.hi), tag.lo
            return
        tin = input_tag(inputs)
        # no tagged input, yet floating-point ones while the data is tagged: buffers or parameters, not the
        # data (a position-bias MLP); with integer inputs only (ids, uint8 images) nothing is tagged: no telling
        const = tin.const if tin is not None else (self.tagged_data and any(
            t.is_floating_point() for t in output_tensors(inputs)))
        layer.constant_input = const if layer.calls == 1 else layer.constant_input and const
        tin = tin or Tag(0, 0)
        bit = 1 << self.layer_index[name]
        up, hom = tin.up | bit, self.scale.layer(module, layer.kind, bit, tin.hom)
        if layer.kind == "norm":  # normalisation: counted in depth, transparent for "follows"
            tag = Tag(tin.lo + 1, tin.hi + 1, tin.pending | {name}, tin.src, EMPTY, tin.wlo, tin.whi, up=up, hom=hom,
                      const=const)
        else:
            tag = Tag(tin.lo + 1, tin.hi + 1, frozenset({name}), frozenset({name}), EMPTY, tin.wlo + 1, tin.whi + 1,
                      up=up, hom=hom, const=const)
        layer.depth = max(layer.depth, tag.hi)
        layer.min_depth = tag.lo if layer.calls == 1 else min(layer.min_depth, tag.lo)
        set_tag(out, tag, self.tagged)

    # ---- the end

    def finish(self, out: Any) -> Trace:
        """Paths and output flags from the model's output tags; the parameter owners never called."""
        found = self.found
        outs = output_tensors(out)
        tags = [t for t in map(tag_of, outs) if t is not None]
        if tags:  # an HF-style output with a loss: prefer the largest tensor (logits) for the path
            main = tag_of(max(outs, key=lambda t: t.numel())) or merge(tags)
            found.shortest_path, found.longest_path = main.lo, main.hi
            found.shortest_weight_path, found.longest_weight_path = main.wlo, main.whi
            for lname in main.src | main.pending:
                self.layer_by_name[lname].is_output = True
            for sname in main.acts:
                self.site_by_name[sname].is_output = True
            for layer in found.layers:  # one pass (a residual stack's output tag holds every site)
                if layer.activation_site in main.acts:
                    layer.is_output = True
        up = 0
        for t in tags:  # every output, not only the main one: a layer whose data reaches any
            up |= t.up
            self.scale.exposed |= t.hom  # an output's size is the model's
        for i, (layer, free) in enumerate(zip(found.layers, self.scale.scale_free(len(found.layers)))):
            layer.feeds_output, layer.scale_free = bool(up >> i & 1), free
        found.uncalled = [n for m, n in self.names.items()
                          if m in self.owners and n not in self.layer_by_name and self.act_kinds[m] is None]
        found.unread = [n for m, n in self.names.items() if m in self.owners and m not in self.read]
        return found


def trace(model: nn.Module, example_inputs: Any) -> Trace:
    """Run ``model`` once on ``example_inputs`` under hooks and record what it calls.

    Runs under ``torch.no_grad`` with the fused MHA fast path off; leaves no hook, no tag and
    no changed buffer, mode or RNG state behind, also when the forward raises.

    Args:
        model: any ``nn.Module``.
        example_inputs: a tensor, a tuple of positional tensors, or a dict of kwargs.

    Returns:
        The ``Trace``: module calls, layers, activation sites, shared and uncalled modules, paths.

    Raises:
        ModelCallError: the model cannot be called on ``example_inputs`` (from ``inputs.call_model``).

    Example:
        >>> t = trace(nn.Sequential(nn.Linear(2, 2), nn.ReLU(), nn.Linear(2, 2)), torch.randn(1, 2))
        >>> [c.name for c in t.calls], t.uncalled
        (['0', '1', '2'], [])
    """
    tracer = _Tracer(model)
    handles = []
    mode = FunctionalActivationMode(tracer.on_functional, tracer.in_activation_module, tracer.on_op, tracer.on_read)
    try:
        with restored_state(model), torch.no_grad(), mha_fastpath_disabled():
            try:
                for m in tracer.names:
                    handles.append(m.register_forward_pre_hook(tracer.pre_hook, with_kwargs=True))
                    handles.append(m.register_forward_hook(tracer.post_hook, with_kwargs=True, always_call=True))
                inputs = tag_inputs(example_inputs, tracer.tagged)
                tracer.tagged_data = bool(tracer.tagged)
                with mode:
                    out = call_model(model, inputs)
            finally:
                for h in handles:
                    h.remove()
        return tracer.finish(out)
    finally:
        clear_tags(tracer.tagged)


__all__ = ["FunctionalActivationMode", "Trace", "function_activation_kind", "trace"]
