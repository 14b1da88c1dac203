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
- per layer, whether its data reaches an output of the model (``feeds_output``, also through
  ``.detach()``), whether every use of its output ends in a normalisation (``scale_free``:
  ``modelmap.scale``) and whether it is fed by buffers or parameters only (``constant_input``);
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

The package, one file per concept: ``trace`` (the traced forward, functional
activations), ``tags`` (the data-flow tags it follows), ``records`` (``Layer``,
``ActivationSite``, ``ModuleCall``), ``names`` (module names), ``views``
(parameter groups, the layer table), ``state`` (``restored_state``) and ``scale`` (which
layers' output size the model ignores). Activation
facts come from ``graddoctor.kinds``.

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

import copy
import weakref
from dataclasses import asdict, fields, replace
from typing import Any

from torch import nn

from graddoctor import kinds
from graddoctor.modelmap.names import module_names, modules_by_name
from graddoctor.modelmap.records import (
    PROBE_KINDS,
    PROFILE_KINDS,
    ActivationSite,
    Layer,
    ModuleCall,
    layer_kind,
)
from graddoctor.modelmap.state import restored_state
from graddoctor.modelmap.trace import (
    FunctionalActivationMode,
    function_activation_kind,
    trace,
)
from graddoctor.modelmap.views import layer_table, param_groups


class ModelMap:
    """Layers, activation sites and module calls of ``model`` on ``example_inputs``.

    Args:
        model: any ``nn.Module``.
        example_inputs: a tensor, a tuple of positional tensors, or a dict of kwargs.

    Attributes:
        model: the model the map was traced from (held weakly: None once it is gone).
        model_type: the model's class name.
        calls: every module call (leaf or parameter-owning), in execution order.
        layers: parameter-owning modules in order of first call.
        activations: activation sites in order of first call.
        shared: names of modules called more than once.
        uncalled: parameter-owning modules never called as modules (unused, or
            whose weights a parent uses functionally, like ``MultiheadAttention.out_proj``).
        unread: parameter-owning modules none of whose own parameters the forward read (a
            head for another task, XLNet's ``mask_emb`` without ``target_mapping``).
        shortest_path / longest_path: fewest / most layers from input to output.
        shortest_weight_path / longest_weight_path: the same, counting weight layers only (no norms).
        module_shapes: module name -> (input shape, output shape) of its first call, every
            called module (containers included; not in ``to_dict``).

    Raises:
        ModelCallError: the model cannot be called on ``example_inputs``.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> net = nn.Sequential(nn.Linear(2, 2), nn.ReLU())
        >>> m = ModelMap(net, torch.randn(1, 2))
        >>> m.layers[0].activation, m.longest_path, m.model is net
        ('relu', 1, True)
    """

    def __init__(self, model: nn.Module, example_inputs: Any) -> None:
        self.model_type = type(model).__name__
        self._model = weakref.ref(model)
        self._trace(model, example_inputs)

    def _trace(self, model: nn.Module, example_inputs: Any) -> None:
        found = trace(model, example_inputs)
        for f in fields(found):
            setattr(self, f.name, getattr(found, f.name))
        self._index()

    def _index(self) -> None:
        self._layer_by_name = {x.name: x for x in self.layers}
        self._site_by_name = {s.name: s for s in self.activations}

    @property
    def model(self) -> nn.Module | None:
        """The model this map was traced from, None once it was garbage-collected."""
        return self._model()

    def layer(self, name: str) -> Layer:
        """The layer called ``name``.

        Raises:
            KeyError: no such layer (the message lists the layers).
        """
        try:
            return self._layer_by_name[name]
        except KeyError:
            raise KeyError(f"no layer {name!r}; layers: {[x.name for x in self.layers]}") from None

    def site(self, name: str) -> ActivationSite:
        """The activation site called ``name`` (KeyError when there is none)."""
        return self._site_by_name[name]

    @property
    def hidden_layers(self) -> list[Layer]:
        """Layers that are not on the output side (no output layer)."""
        return [x for x in self.layers if not x.is_output]

    def to_dict(self) -> dict[str, Any]:
        """The map as plain JSON types (``module_shapes`` and the model left out)."""
        return {
            "model": self.model_type,
            "layers": [asdict(x) for x in self.layers],
            "activations": [asdict(s) for s in self.activations],
            "calls": [asdict(c) for c in self.calls],
            "shared": self.shared,
            "uncalled": self.uncalled,
            "unread": self.unread,
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
        return layer_table(self)

    def with_activations(self, modules: dict[str, nn.Module]) -> ModelMap:
        """The map after the activation modules registered under these names were replaced by
        these activation modules (``{name: new_module}``), without a new forward pass.

        Exact: swapping one activation module for another changes no shape, no data flow and
        no depth, only the kinds (site, ``Layer.activation``), the call's type and, for
        activations with parameters, ``has_params``; a site that stops being saturating is no
        gate (gates are only marked on saturating sites). Names not in the map are ignored.
        The map itself is not changed; the new one maps the same model.

        Example:
            >>> import torch
            >>> net = nn.Sequential(nn.Linear(2, 2), nn.Sigmoid(), nn.Linear(2, 1))
            >>> m = ModelMap(net, torch.randn(3, 2))
            >>> m.with_activations({"1": nn.ReLU()}).layers[0].activation, m.layers[0].activation
            ('relu', 'sigmoid')
        """
        new_kinds = {n: k for n, mod in modules.items() if (k := kinds.of_module(mod)) is not None}
        new = copy.copy(self)
        new.activations = [
            replace(s, kind=new_kinds[s.name], family=kinds.get(new_kinds[s.name]).family,
                    gate=s.gate and kinds.family(new_kinds[s.name]) == "saturating")
            if s.name in new_kinds and not s.functional else s for s in self.activations]
        new.layers = [replace(x, activation=new_kinds[x.activation_site])
                      if x.activation_site in new_kinds and not self._site_by_name[x.activation_site].functional
                      else x for x in self.layers]
        new.calls = [replace(c, type=type(modules[c.name]).__name__,
                             has_params=any(True for _ in modules[c.name].parameters(recurse=False)))
                     if c.name in new_kinds else c for c in self.calls]
        new.shared, new.uncalled, new.unread = list(self.shared), list(self.uncalled), list(self.unread)
        new.module_shapes = dict(self.module_shapes)
        new._index()
        return new

    def param_groups(self, model: nn.Module) -> list[tuple[str, list[nn.Parameter]]]:
        """All parameters of ``model`` grouped by owning module, layers in execution order
        (see ``graddoctor.modelmap.views.param_groups``)."""
        return param_groups(self, model)


__all__ = [
    "PROBE_KINDS", "PROFILE_KINDS",
    "ActivationSite", "FunctionalActivationMode", "Layer", "ModelMap",
    "ModuleCall", "function_activation_kind", "layer_kind", "module_names",
    "modules_by_name", "restored_state",
]
