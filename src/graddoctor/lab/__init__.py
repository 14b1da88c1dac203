"""The lab: classic vanishing-gradient results reproduced next to the paper's numbers.

Each experiment is one module of this package (a :class:`~graddoctor.lab.base.Experiment`
subclass); the registry maps its name to ``module:Class`` and imports it on use.

Example:
    >>> from graddoctor import lab
    >>> "gradient-decay" in lab.names()
    True
    >>> "Glorot" in lab.get("gradient-decay").source
    True
"""

from __future__ import annotations

from importlib import import_module

from graddoctor.errors import InputError
from graddoctor.lab.base import Check, Experiment, Outcome

#: experiment name -> "module:Class" (in the order of the README table)
EXPERIMENTS: dict[str, str] = {
    "gradient-decay": "gradient_decay:GradientDecay",
    "glorot-init": "glorot_init:GlorotInit",
    "adding-problem": "adding_problem:AddingProblem",
    "temporal-order": "temporal_order:TemporalOrder",
    "depth-degradation": "depth_degradation:DepthDegradation",
    "batchnorm-sigmoid": "batchnorm_sigmoid:BatchNormSigmoid",
    "rezero": "rezero:ReZero",
    "dynamical-isometry": "dynamical_isometry:DynamicalIsometry",
    "clipping": "clipping:Clipping",
    "dying-relu": "dying_relu:DyingReLU",
    "small-batch-norm": "small_batch_norm:SmallBatchNorm",
    "prenorm-postnorm": "prenorm_postnorm:PreNormPostNorm",
    "skip-gradients": "skip_gradients:SkipGradients",
}


def names() -> list[str]:
    """Names of the registered experiments, in table order."""
    return list(EXPERIMENTS)


def get(name: str) -> Experiment:
    """A fresh instance of the experiment called ``name``."""
    if name not in EXPERIMENTS:
        raise InputError(f"unknown lab experiment {name!r}: choose one of {', '.join(EXPERIMENTS)}")
    module, cls = EXPERIMENTS[name].split(":")
    return getattr(import_module(f".{module}", __name__), cls)()


def run(name: str, mode: str = "quick", seeds: int = 3, seed_start: int = 0,
        **overrides) -> Outcome:  # noqa: ANN003
    """Run one experiment over ``seeds`` seeds (``seed_start`` .. ``seed_start+seeds-1``) and
    return its :class:`Outcome`.

    Example:
        >>> out = run("dynamical-isometry", seeds=1, width=16, depth=4)  # doctest: +SKIP
        >>> out.passed  # doctest: +SKIP
    """
    exp = get(name)
    return exp.verdict(list(range(seed_start, seed_start + seeds)), exp.settings(mode, **overrides),
                       mode)


__all__ = ["EXPERIMENTS", "Check", "Experiment", "Outcome", "get", "names", "run"]
