"""ModelMap: the layers of a model in execution order, from one forward pass.

One forward pass on the example inputs records

- every module call (leaf modules and modules that own parameters directly):
  name, class, input and output shapes, in execution order;
- the *layers*: called modules that own parameters directly (activation
  modules with parameters, like PReLU, are activation sites instead);
- the *activation sites*: activation modules (``nn.ReLU``, HF ``GELUActivation``,
  ...) and activations called functionally (``F.relu``, ``torch.sigmoid``,
  ``x.tanh()``), the latter seen through a ``TorchFunctionMode`` and attributed
  to the module running at the time (named ``"<owner>/<kind>#<i>"``);
- the activation that *follows* each layer, found by data flow: the first
  activation applied to the layer's output, passing through normalisation
  layers and element-wise ops (so ``Linear -> BatchNorm -> ReLU`` gives the
  Linear a ``relu``);
- modules called more than once (shared weights);
- the depth of each layer along the forward path, as the longest (``depth``)
  and the shortest (``min_depth``) count of layers from the input: a skip
  connection shows as ``min_depth`` far below ``depth``
  (``ModelMap.shortest_path`` is the shortest count to the output).

Hooks are removed afterwards, also when the forward raises; the model's
train/eval mode, its buffers (BatchNorm running statistics) and the RNG state
are restored. The map runs under ``torch.no_grad`` with the fused MHA fast path
disabled, so that ``nn.TransformerEncoder`` shows its submodules.

A model with no parameters gives a map with no layers (``layers == []``);
its activation sites are still recorded.

Example:
    >>> import torch
    >>> from torch import nn
    >>> from graddoctor.modelmap import ModelMap
    >>> net = nn.Sequential(nn.Linear(4, 8), nn.Sigmoid(), nn.Linear(8, 2))
    >>> m = ModelMap(net, torch.randn(3, 4))
    >>> [(l.name, l.activation) for l in m.layers]
    [('0', 'sigmoid'), ('2', None)]
"""

from __future__ import annotations

import contextlib
import copy
import weakref
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, replace
from typing import Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_map

from graddoctor.inputs import call_model, first_tensor, leaves, output_tensors

#: layer kinds whose weights carry the backpropagated signal: the across-layer gradient
#: profiles of watch's rules use these (norm gains, embeddings with sparse row gradients and
#: "other" modules such as scalar gates are left out)
PROFILE_KINDS = ("linear", "conv", "rnn", "attention")
#: the init probe also profiles "other" parameter-owning modules (hand-written cells, custom
#: layers): it measures their output signal itself, not their weight gradients
PROBE_KINDS = (*PROFILE_KINDS, "other")

# ---------------------------------------------------------------- activations

#: activation kind -> family ("relu": piecewise linear / non-saturating on one side,
#: "saturating": bounded on both sides, "smooth": other)
ACTIVATION_FAMILY: dict[str, str] = {
    "relu": "relu", "relu6": "relu", "leaky_relu": "relu", "prelu": "relu", "rrelu": "relu",
    "elu": "relu", "selu": "relu", "celu": "relu", "gelu": "relu", "silu": "relu",
    "mish": "relu", "hardswish": "relu", "softplus": "relu",
    "sigmoid": "saturating", "tanh": "saturating", "hardtanh": "saturating",
    "hardsigmoid": "saturating", "softsign": "saturating", "logsigmoid": "saturating",
}

_MODULE_KIND: dict[type, str] = {
    nn.ReLU: "relu", nn.ReLU6: "relu6", nn.LeakyReLU: "leaky_relu", nn.PReLU: "prelu",
    nn.RReLU: "rrelu", nn.ELU: "elu", nn.SELU: "selu", nn.CELU: "celu", nn.GELU: "gelu",
    nn.SiLU: "silu", nn.Mish: "mish", nn.Hardswish: "hardswish", nn.Softplus: "softplus",
    nn.Sigmoid: "sigmoid", nn.Tanh: "tanh", nn.Hardtanh: "hardtanh",
    nn.Hardsigmoid: "hardsigmoid", nn.Softsign: "softsign", nn.LogSigmoid: "logsigmoid",
}

# class-name fragments for third-party activation modules (HF's GELUActivation, ...)
_NAME_HINTS: tuple[tuple[str, str], ...] = (
    ("gelu", "gelu"), ("silu", "silu"), ("swish", "silu"), ("mish", "mish"),
    ("leakyrelu", "leaky_relu"), ("relu", "relu"), ("sigmoid", "sigmoid"), ("tanh", "tanh"),
    ("elu", "elu"),
)

# torch modules that are not one of the kinds above although their names contain a hint
# (Tanhshrink is x - tanh(x): unbounded, not saturating), and name fragments that veto a hint
_NOT_ACTIVATION: tuple[type, ...] = (nn.Tanhshrink, nn.Softshrink, nn.Hardshrink, nn.Threshold)
_NAME_VETO = ("shrink",)

_FUNCTION_KINDS = set(ACTIVATION_FAMILY)


def activation_kind(module: nn.Module) -> str | None:
    """The activation kind of a module (``"relu"``, ``"sigmoid"``, ...) or None.

    Example:
        >>> activation_kind(nn.Tanh()), activation_kind(nn.Linear(2, 2))
        ('tanh', None)
    """
    for cls in type(module).__mro__:
        if cls in _MODULE_KIND:
            return _MODULE_KIND[cls]
    if isinstance(module, _NOT_ACTIVATION):
        return None
    # third-party: a leaf with at most scalar parameters whose class name says what it is
    if any(True for _ in module.children()) or any(p.numel() > 1 for p in module.parameters(recurse=False)):
        return None
    name = type(module).__name__.lower()
    if any(v in name for v in _NAME_VETO):
        return None
    for hint, kind in _NAME_HINTS:
        if hint in name:
            return kind
    return None


def module_names(model: nn.Module) -> dict[nn.Module, str]:
    """Each module of ``model`` -> the first name it is registered under (a module shared under
    several names appears once). ``ModelMap``'s layer and site names are these names.

    Example:
        >>> lin = nn.Linear(2, 2)
        >>> list(module_names(nn.Sequential(lin, nn.ReLU(), lin)).values())
        ['', '0', '1']
    """
    names: dict[nn.Module, str] = {}
    for n, m in model.named_modules(remove_duplicate=False):
        names.setdefault(m, n)
    return names


def modules_by_name(model: nn.Module) -> dict[str, nn.Module]:
    """The inverse of ``module_names``: look a module up by its (``ModelMap``) name."""
    return {n: m for m, n in module_names(model).items()}


def function_activation_kind(func: Callable) -> str | None:
    """The activation kind of a torch function seen by a TorchFunctionMode, or None.

    Example:
        >>> import torch.nn.functional as F
        >>> function_activation_kind(F.relu), function_activation_kind(torch.Tensor.tanh)
        ('relu', 'tanh')
    """
    name = getattr(func, "__name__", "")
    module = getattr(func, "__module__", None) or ""
    if not (module.startswith("torch") or module == "" or module is None):
        return None
    name = name.rstrip("_")
    return name if name in _FUNCTION_KINDS else None


def layer_kind(module: nn.Module) -> str:
    """Coarse kind of a parameter-owning module: linear, conv, norm, rnn, embedding, attention, other."""
    if isinstance(module, nn.Linear) or type(module).__name__ in ("Conv1D",):  # HF GPT-2 Conv1D is a linear
        return "linear"
    if isinstance(module, nn.modules.conv._ConvNd):
        return "conv"
    if isinstance(module, (nn.RNNBase, nn.RNNCellBase)):
        return "rnn"
    if isinstance(module, (nn.Embedding, nn.EmbeddingBag)):
        return "embedding"
    if isinstance(module, nn.MultiheadAttention):
        return "attention"
    if "norm" in type(module).__name__.lower():
        return "norm"
    return "other"


# ---------------------------------------------------------------- records


@dataclass
class ModuleCall:
    """One module call, in execution order."""

    index: int
    name: str
    type: str
    input_shape: tuple[int, ...] | None
    output_shape: tuple[int, ...] | None
    has_params: bool


@dataclass
class Layer:
    """A called module that owns parameters directly.

    ``depth``/``min_depth``: longest/shortest number of layers from the input to
    this layer's output (this layer included). ``activation``: kind of the first
    activation applied to its output (through norms and element-wise ops), None
    if none; ``activation_site`` names that site.
    """

    name: str
    type: str
    kind: str
    params: list[str]
    n_params: int
    calls: int = 0
    depth: int = 0
    min_depth: int = 0
    activation: str | None = None
    activation_site: str | None = None
    input_shape: tuple[int, ...] | None = None
    output_shape: tuple[int, ...] | None = None
    is_output: bool = False


@dataclass
class ActivationSite:
    """An activation module, or a functional activation attributed to its owner module."""

    name: str
    kind: str
    family: str
    functional: bool
    owner: str
    calls: int = 0
    output_shape: tuple[int, ...] | None = None
    is_output: bool = False
    gate: bool = False  # its output multiplies another input-derived tensor (GLU, SE, hand-made LSTM)
    after_layer: bool = False  # its input comes from the data through at least one layer


@dataclass(frozen=True)
class _Tag:
    lo: int  # shortest layer count from the input
    hi: int  # longest layer count from the input
    pending: frozenset = frozenset()  # layers whose output reached here with no activation yet
    src: frozenset = frozenset()  # last weight layers (not norms) on the path
    acts: frozenset = frozenset()  # activation sites applied since the last layer
    wlo: int = 0  # shortest count of weight layers (norms not counted) from the input
    whi: int = 0  # longest count of weight layers from the input


_EMPTY: frozenset = frozenset()
_TAG_ATTR = "_graddoctor_tag"


def _tag_of(x: Any) -> _Tag | None:
    return getattr(x, _TAG_ATTR, None) if isinstance(x, torch.Tensor) else None


def _merge(tags: list[_Tag]) -> _Tag:
    if len(tags) == 1:
        return tags[0]
    return _Tag(
        min(t.lo for t in tags), max(t.hi for t in tags),
        frozenset().union(*(t.pending for t in tags)),
        frozenset().union(*(t.src for t in tags)),
        frozenset().union(*(t.acts for t in tags)),
        min(t.wlo for t in tags), max(t.whi for t in tags),
    )


def _set_tag(tree: Any, tag: _Tag, tagged: list[weakref.ref]) -> None:
    """Tag the floating-point tensors of ``tree``; each one goes into ``tagged`` (weakly) so that
    ``_clear_tags`` can remove every tag after the trace (also from buffers changed in place and
    tensors the model keeps)."""
    for x in leaves(tree):
        if isinstance(x, torch.Tensor) and x.is_floating_point():
            with contextlib.suppress(Exception):
                setattr(x, _TAG_ATTR, tag)
                tagged.append(weakref.ref(x))


def _clear_tags(tagged: list[weakref.ref]) -> None:
    for ref in tagged:
        x = ref()
        if x is not None and hasattr(x, _TAG_ATTR):
            with contextlib.suppress(Exception):
                delattr(x, _TAG_ATTR)
    tagged.clear()


def _input_tag(args: Any) -> _Tag | None:
    tags = [t for t in map(_tag_of, leaves(args)) if t is not None]
    return _merge(tags) if tags else None


def _shape(tree: Any) -> tuple[int, ...] | None:
    t = first_tensor(tree)
    return tuple(t.shape) if t is not None else None


class FunctionalActivationMode(TorchFunctionMode):
    """Sees functional activations (``F.relu``, ``torch.sigmoid``, ``x.tanh()``, ...).

    ``on_activation(kind, args, out)`` is called for each one that does not run
    inside an activation module; ``on_op(func, args, kwargs, out)``, if given,
    for every other torch call. The owner module is whatever the caller tracks.
    Reusable by watch's activation statistics.
    """

    def __init__(
        self,
        on_activation: Callable[[str, tuple, Any], None],
        in_activation_module: Callable[[], bool],
        on_op: Callable[[Callable, tuple, dict, Any], None] | None = None,
    ) -> None:
        super().__init__()
        self.on_activation = on_activation
        self.in_activation_module = in_activation_module
        self.on_op = on_op

    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        kind = function_activation_kind(func)
        if kind is not None and not self.in_activation_module():
            self.on_activation(kind, args, out)
        elif self.on_op is not None:
            self.on_op(func, args, kwargs, out)
        return out


# ---------------------------------------------------------------- the map


class ModelMap:
    """Layers, activation sites and module calls of ``model`` on ``example_inputs``.

    Args:
        model: any ``nn.Module``.
        example_inputs: a tensor, a tuple of positional tensors, or a dict of kwargs.

    Attributes:
        calls: every module call (leaf or parameter-owning), in execution order.
        layers: parameter-owning modules in order of first call.
        activations: activation sites in order of first call.
        shared: names of modules called more than once.
        uncalled: parameter-owning modules never called as modules (unused, or
            whose weights a parent uses functionally, like ``MultiheadAttention.out_proj``).
        shortest_path / longest_path: fewest / most layers from input to output.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> m = ModelMap(nn.Sequential(nn.Linear(2, 2), nn.ReLU()), torch.randn(1, 2))
        >>> m.layers[0].activation, m.longest_path
        ('relu', 1)
    """

    def __init__(self, model: nn.Module, example_inputs: Any) -> None:
        self.model_type = type(model).__name__
        self.calls: list[ModuleCall] = []
        self.layers: list[Layer] = []
        self.activations: list[ActivationSite] = []
        self.shared: list[str] = []
        self.uncalled: list[str] = []
        self.shortest_path = 0
        self.longest_path = 0
        self.shortest_weight_path = 0  # as shortest_path, counting weight layers only (no norms)
        self.longest_weight_path = 0
        #: module name -> (input shape, output shape) of its first call, every called module
        #: (containers included; not in ``to_dict``)
        self.module_shapes: dict[str, tuple[tuple[int, ...] | None, tuple[int, ...] | None]] = {}
        self._layer_by_name: dict[str, Layer] = {}
        self._site_by_name: dict[str, ActivationSite] = {}
        self._trace(model, example_inputs)

    # ---- public helpers

    def layer(self, name: str) -> Layer:
        """The layer called ``name`` (KeyError with the known names otherwise)."""
        try:
            return self._layer_by_name[name]
        except KeyError:
            raise KeyError(f"no layer {name!r}; layers: {[x.name for x in self.layers]}") from None

    def site(self, name: str) -> ActivationSite:
        return self._site_by_name[name]

    @property
    def hidden_layers(self) -> list[Layer]:
        """Layers that are not on the output side (no output layer)."""
        return [x for x in self.layers if not x.is_output]

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model_type,
            "layers": [asdict(x) for x in self.layers],
            "activations": [asdict(s) for s in self.activations],
            "calls": [asdict(c) for c in self.calls],
            "shared": self.shared,
            "uncalled": self.uncalled,
            "shortest_path": self.shortest_path,
            "longest_path": self.longest_path,
            "shortest_weight_path": self.shortest_weight_path,
            "longest_weight_path": self.longest_weight_path,
        }

    def __len__(self) -> int:
        return len(self.layers)

    def __repr__(self) -> str:
        return (f"ModelMap({self.model_type}: {len(self.layers)} layers, "
                f"{len(self.activations)} activation sites, path {self.shortest_path}..{self.longest_path})")

    def __str__(self) -> str:
        rows = [repr(self), f"{'#':>4} {'layer':<32} {'type':<18} {'depth':>9} {'activation':<12} output"]
        for i, x in enumerate(self.layers):
            depth = f"{x.min_depth}..{x.depth}" if x.min_depth != x.depth else str(x.depth)
            act = (x.activation or "-") + (" (out)" if x.is_output else "")
            shared = f" x{x.calls}" if x.calls > 1 else ""
            rows.append(f"{i:>4} {x.name or '<model>':<32} {x.type + shared:<18} {depth:>9} {act:<12} {x.output_shape}")
        return "\n".join(rows)

    # ---- tracing

    def _trace(self, model: nn.Module, example_inputs: Any) -> None:
        names = module_names(model)  # first name a shared module was registered under
        owners = {m for m in names if any(True for _ in m.parameters(recurse=False))}
        act_kinds = {m: activation_kind(m) for m in names}
        tracked = {m for m in names if not any(True for _ in m.children()) or m in owners or act_kinds[m]}

        tagged: list[weakref.ref] = []  # every tensor tagged during the trace (see _clear_tags)
        stack: list[nn.Module] = []
        layer_calls_at_entry: list[int] = []
        state = {"layer_calls": 0}
        fn_counter: dict[tuple[str, str], int] = {}
        call_counter: dict[nn.Module, int] = {}

        def in_activation_module() -> bool:
            return bool(stack) and act_kinds.get(stack[-1]) is not None

        def record_activation(site_name: str, kind: str, functional: bool, owner: str, args: Any, out: Any) -> None:
            site = self._site_by_name.get(site_name)
            if site is None:
                site = ActivationSite(site_name, kind, ACTIVATION_FAMILY.get(kind, "smooth"), functional, owner)
                self._site_by_name[site_name] = site
                self.activations.append(site)
            site.calls += 1
            site.output_shape = _shape(out)
            tag = _input_tag(args)
            if tag is None:
                return
            site.after_layer = site.after_layer or tag.hi > 0
            for lname in tag.pending:
                layer = self._layer_by_name[lname]
                if layer.activation is None:
                    layer.activation, layer.activation_site = kind, site_name
            _set_tag(out, _Tag(tag.lo, tag.hi, _EMPTY, tag.src, tag.acts | {site_name}, tag.wlo, tag.whi),
                     tagged)

        def on_functional(kind: str, args: tuple, out: Any) -> None:
            owner = names[stack[-1]] if stack else ""
            key = (owner, kind)
            i = fn_counter.get(key, 0)
            fn_counter[key] = i + 1
            record_activation(f"{owner or 'model'}/{kind}#{i}", kind, True, owner, args, out)

        def on_op(func: Callable, args: tuple, kwargs: dict, out: Any) -> None:
            tag = _input_tag((args, kwargs))
            if tag is not None:
                if getattr(func, "__name__", "") in _MUL_NAMES:
                    _mark_gates(args)
                _set_tag(out, tag, tagged)

        def _mark_gates(args: tuple) -> None:
            tags = [t for t in map(_tag_of, args) if t is not None]
            if len(tags) < 2:  # a product with a constant or a parameter is a scale, not a gate
                return
            for i, t in enumerate(tags):
                others = frozenset().union(*(u.acts for j, u in enumerate(tags) if j != i))
                for sname in t.acts - others:
                    site = self._site_by_name.get(sname)
                    if site is not None and site.family == "saturating":
                        site.gate = True

        def pre_hook(module: nn.Module, args: Any, kwargs: Any) -> None:
            stack.append(module)
            layer_calls_at_entry.append(state["layer_calls"])
            if len(stack) == 1:  # a new top-level forward: functional sites count from 0 again
                fn_counter.clear()

        def post_hook(module: nn.Module, args: Any, kwargs: Any, out: Any) -> None:
            if stack and stack[-1] is module:
                stack.pop()
            entry_calls = layer_calls_at_entry.pop() if layer_calls_at_entry else 0
            name = names[module]
            first = name not in self.module_shapes
            if module not in tracked:
                if first:
                    self.module_shapes[name] = (_shape((args, kwargs)), _shape(out))
                return
            call_counter[module] = call_counter.get(module, 0) + 1
            if call_counter[module] == 2:
                self.shared.append(name)
            in_shape, out_shape = _shape((args, kwargs)), _shape(out)
            if first:
                self.module_shapes[name] = (in_shape, out_shape)
            self.calls.append(ModuleCall(len(self.calls), name, type(module).__name__, in_shape,
                                         out_shape, module in owners))
            kind = act_kinds[module]
            if kind is not None:
                record_activation(name, kind, False, name, (args, kwargs), out)
                return
            if module not in owners:
                return
            layer = self._layer_by_name.get(name)
            if layer is None:
                params = [f"{name}.{p}" if name else p for p, _ in module.named_parameters(recurse=False)]
                layer = Layer(name, type(module).__name__, layer_kind(module), params,
                              sum(p.numel() for p in module.parameters(recurse=False)))
                self._layer_by_name[name] = layer
                self.layers.append(layer)
            layer.calls += 1
            layer.input_shape = layer.input_shape or in_shape
            layer.output_shape = out_shape
            if state["layer_calls"] > entry_calls:  # a parent with its own params around child layers
                state["layer_calls"] += 1
                tag = _input_tag(out)
                if tag is not None:
                    layer.depth, layer.min_depth = max(layer.depth, tag.hi), tag.lo
                return
            state["layer_calls"] += 1
            tin = _input_tag((args, kwargs)) or _Tag(0, 0)
            if layer.kind == "norm":  # normalisation: counted in depth, transparent for "follows"
                tag = _Tag(tin.lo + 1, tin.hi + 1, tin.pending | {name}, tin.src, _EMPTY, tin.wlo, tin.whi)
            else:
                tag = _Tag(tin.lo + 1, tin.hi + 1, frozenset({name}), frozenset({name}), _EMPTY,
                           tin.wlo + 1, tin.whi + 1)
            layer.depth = max(layer.depth, tag.hi)
            layer.min_depth = tag.lo if layer.calls == 1 else min(layer.min_depth, tag.lo)
            _set_tag(out, tag, tagged)

        handles = []
        mode = FunctionalActivationMode(on_functional, in_activation_module, on_op)
        try:
            with restored_state(model), torch.no_grad(), _mha_fastpath_disabled():
                try:
                    for m in names:
                        handles.append(m.register_forward_pre_hook(pre_hook, with_kwargs=True))
                        handles.append(m.register_forward_hook(post_hook, with_kwargs=True,
                                                               always_call=True))
                    inputs = _tag_inputs(example_inputs, tagged)
                    with mode:
                        out = call_model(model, inputs)
                finally:
                    for h in handles:
                        h.remove()
            self._finish(model, names, owners, out)
        finally:
            _clear_tags(tagged)

    def _finish(self, model: nn.Module, names: dict, owners: set, out: Any) -> None:
        outs = output_tensors(out)
        tags = [t for t in map(_tag_of, outs) if t is not None]
        # an HF-style output with a loss: prefer the largest tensor (logits) for the path
        if tags:
            main = _tag_of(max(outs, key=lambda t: t.numel())) or _merge(tags)
            self.shortest_path, self.longest_path = main.lo, main.hi
            self.shortest_weight_path, self.longest_weight_path = main.wlo, main.whi
            for lname in main.src:
                self._layer_by_name[lname].is_output = True
            for lname in main.pending:
                self._layer_by_name[lname].is_output = True
            for sname in main.acts:
                self._site_by_name[sname].is_output = True
                for layer in self.layers:
                    if layer.activation_site == sname:
                        layer.is_output = True
        called = set(self._layer_by_name)
        self.uncalled = [names[m] for m in names if m in owners and names[m] not in called
                         and activation_kind(m) is None]

    def with_activations(self, modules: dict[str, nn.Module]) -> ModelMap:
        """The map after the activation modules registered under these names were replaced by
        these activation modules (``{name: new_module}``), without a new forward pass.

        Exact: swapping one activation module for another changes no shape, no data flow and
        no depth, only the kinds (site, ``Layer.activation``), the call's type and, for
        activations with parameters, ``has_params``; a site that stops being saturating is no
        gate (gates are only marked on saturating sites). Names not in the map are ignored.
        The map itself is not changed.

        Example:
            >>> net = nn.Sequential(nn.Linear(2, 2), nn.Sigmoid(), nn.Linear(2, 1))
            >>> m = ModelMap(net, torch.randn(3, 2))
            >>> m.with_activations({"1": nn.ReLU()}).layers[0].activation, m.layers[0].activation
            ('relu', 'sigmoid')
        """
        kinds = {n: k for n, mod in modules.items() if (k := activation_kind(mod)) is not None}
        new = copy.copy(self)
        new.activations = [
            replace(s, kind=kinds[s.name], family=ACTIVATION_FAMILY.get(kinds[s.name], "smooth"),
                    gate=s.gate and ACTIVATION_FAMILY.get(kinds[s.name]) == "saturating")
            if s.name in kinds and not s.functional else s for s in self.activations]
        new.layers = [replace(x, activation=kinds[x.activation_site])
                      if x.activation_site in kinds and not self._site_by_name[x.activation_site].functional
                      else x for x in self.layers]
        new.calls = [replace(c, type=type(modules[c.name]).__name__,
                             has_params=any(True for _ in modules[c.name].parameters(recurse=False)))
                     if c.name in kinds else c for c in self.calls]
        new._layer_by_name = {x.name: x for x in new.layers}
        new._site_by_name = {s.name: s for s in new.activations}
        new.shared, new.uncalled = list(self.shared), list(self.uncalled)
        new.module_shapes = dict(self.module_shapes)
        return new

    def param_groups(self, model: nn.Module) -> list[tuple[str, list[nn.Parameter]]]:
        """All parameters of ``model`` grouped by owning module, layers in execution order.

        Modules never called (see ``uncalled``) follow their nearest called
        ancestor, or go last. Each parameter appears once (shared ones under
        their first owner).
        """
        mods = modules_by_name(model)
        order: list[str] = []
        for layer in self.layers:
            order.append(layer.name)
        for n in self.uncalled:
            parent = n.rsplit(".", 1)[0] if "." in n else ""
            while parent and parent not in order:
                parent = parent.rsplit(".", 1)[0] if "." in parent else ""
            if parent in order:
                order.insert(order.index(parent) + 1, n)
            else:
                order.append(n)
        for s in self.activations:  # activation modules with parameters (PReLU)
            if not s.functional and s.name in mods and any(True for _ in mods[s.name].parameters(recurse=False)):
                if s.name not in order:
                    order.append(s.name)
        seen: set[int] = set()
        groups = []
        for n in order:
            if n not in mods:
                continue
            ps = [p for p in mods[n].parameters(recurse=False) if id(p) not in seen]
            seen.update(id(p) for p in ps)
            if ps:
                groups.append((n, ps))
        rest = [p for p in model.parameters() if id(p) not in seen]
        if rest:
            groups.append(("<other>", rest))
        return groups


def _tag_inputs(inputs: Any, tagged: list[weakref.ref]) -> Any:
    """Tag copies of the floating-point inputs, leaving the user's tensors untouched
    (no attribute set on them, and a model that works in place on its input changes the copy)."""

    def alias(x: Any) -> Any:
        if isinstance(x, torch.Tensor) and x.is_floating_point():
            y = x.clone()
            setattr(y, _TAG_ATTR, _Tag(0, 0))
            tagged.append(weakref.ref(y))
            return y
        return x

    return tree_map(alias, inputs)


_MUL_NAMES = {"mul", "mul_", "__mul__", "__rmul__", "__imul__", "multiply", "addcmul", "addcmul_"}


@contextlib.contextmanager
def restored_state(model: nn.Module) -> Iterator[None]:
    """Restore train/eval flags, buffers and the RNG state after the block.

    Example:
        >>> net = nn.BatchNorm1d(2)
        >>> with restored_state(net):
        ...     _ = net(torch.randn(4, 2))
        >>> net.running_mean.tolist()
        [0.0, 0.0]
    """
    modes = {m: m.training for m in model.modules()}
    buffers = {n: b.detach().clone() for n, b in model.named_buffers()}
    cpu_rng = torch.get_rng_state()
    cuda_rng = torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else None
    try:
        yield
    finally:
        for m, t in modes.items():
            m.training = t
        with torch.no_grad():
            for n, b in model.named_buffers():
                if n in buffers and b.shape == buffers[n].shape:
                    b.copy_(buffers[n])
        torch.set_rng_state(cpu_rng)
        if cuda_rng is not None:
            torch.cuda.set_rng_state_all(cuda_rng)




@contextlib.contextmanager
def _mha_fastpath_disabled() -> Iterator[None]:
    backend = getattr(torch.backends, "mha", None)
    if backend is None or not hasattr(backend, "set_fastpath_enabled"):
        yield
        return
    before = backend.get_fastpath_enabled()
    backend.set_fastpath_enabled(False)
    try:
        yield
    finally:
        backend.set_fastpath_enabled(before)


__all__ = [
    "ACTIVATION_FAMILY", "PROBE_KINDS", "PROFILE_KINDS",
    "ActivationSite", "FunctionalActivationMode", "Layer", "ModelMap",
    "ModuleCall", "activation_kind", "function_activation_kind", "layer_kind", "module_names",
    "modules_by_name", "restored_state",
]
