"""gd.check on real architectures: healthy models people use and broken variants of them.

Healthy: Hugging Face ``transformers`` models from tiny configs (no weights), torch's built-in
Transformer/LSTM/GRU models, and hand-written replicas of the vision model zoos (``zoo_vision``).
Broken: ``zoo_broken``, each fault confirmed by plain torch in the suite itself (``truth``).

Acceptance: no error finding on a healthy model; every broken variant found with its code.

Usage:
    python benchmarks/realworld/check_suite.py            # the whole suite, a table and a summary
    python benchmarks/realworld/check_suite.py --only resnet18-zero-init clip -v
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))

import zoo_vision as V  # noqa: E402
from zoo_broken import BROKEN  # noqa: E402
from zoo_hf import HF_MODELS  # noqa: E402
from zoo_torch import BUILTIN_MODELS  # noqa: E402

import graddoctor as gd  # noqa: E402


def _img(b: int = 8, s: int = 32) -> torch.Tensor:
    return torch.randn(b, 3, s, s, generator=torch.Generator().manual_seed(0))


def _clip_inputs():
    return (_img(), torch.randint(0, 100, (8, 12), generator=torch.Generator().manual_seed(0)))


VISION: dict[str, tuple[str, object]] = {
    "resnet18-zero-init": ("zoo-resnet", lambda: (V.resnet18(), _img())),
    "resnet18": ("zoo-resnet", lambda: (V.resnet18(zero_init_residual=False), _img())),
    "resnet50-zero-init": ("zoo-resnet", lambda: (V.resnet50(), _img())),
    "regnety-s1b1": ("zoo-regnet", lambda: (V.RegNet(), _img())),
    "convnext-layerscale": ("zoo-convnext", lambda: (V.ConvNeXt(), _img())),
    "efficientnet-se-silu": ("zoo-efficientnet", lambda: (V.EfficientNet(), _img())),
    "mobilenetv2": ("zoo-mobilenet", lambda: (V.mobilenet_v2(), _img())),
    "mlp-mixer": ("zoo-mixer", lambda: (V.MlpMixer(), _img())),
    "swin-windows": ("zoo-swin", lambda: (V.Swin(), _img())),
    "densenet": ("zoo-densenet", lambda: (V.densenet(), _img())),
    "vgg11-bn": ("zoo-vgg", lambda: (V.vgg11_bn(), _img())),
    "clip-logit-scale": ("zoo-clip", lambda: (V.TinyClip(), _clip_inputs())),
}


@dataclass
class Case:
    name: str
    family: str
    healthy: bool
    build: object
    expected: str | None = None
    truth: object = None


@dataclass
class Outcome:
    case: Case
    codes: dict[str, str] = field(default_factory=dict)  # code -> worst severity
    seconds: float = 0.0
    truth: dict | None = None
    confirmed: bool | None = None
    error: str | None = None

    @property
    def errors(self) -> list[str]:
        return sorted(c for c, s in self.codes.items() if s == "error")

    @property
    def passed(self) -> bool:
        if self.error:
            return False
        if self.case.healthy:
            return not self.errors
        return bool(self.confirmed) and self.case.expected in self.codes


def cases() -> list[Case]:
    out = [Case(n, f, True, b) for reg in (VISION, BUILTIN_MODELS, HF_MODELS) for n, (f, b) in reg.items()]
    out += [Case(n, f, False, b, code, truth) for n, (f, b, code, truth) in BROKEN.items()]
    return out


def by_name(name: str) -> Case:
    return next(c for c in cases() if c.name == name)


_RANK = {"info": 0, "warning": 1, "error": 2}


def run_case(case: Case) -> tuple[Outcome, gd.Report | None]:
    """Build the model (seed 0), check it, and for a broken variant confirm the fault by plain torch."""
    torch.manual_seed(0)
    model, inputs = case.build()
    out = Outcome(case)
    report = None
    try:
        t0 = time.perf_counter()
        report = gd.check(model, inputs)
        out.seconds = time.perf_counter() - t0
    except Exception as e:  # noqa: BLE001 - a crash is a row of the table, not the end of the suite
        out.error = f"{type(e).__name__}: {str(e).splitlines()[0][:120] if str(e) else ''}"
        return out, None
    for f in report.findings:
        if _RANK[f.severity] >= _RANK.get(out.codes.get(f.code, "info"), 0) or f.code not in out.codes:
            out.codes[f.code] = f.severity
    if not case.healthy:
        out.confirmed, out.truth = case.truth(model, inputs)
    return out, report


def _codes(o: Outcome) -> str:
    if o.error:
        return "CRASH " + o.error
    return ", ".join(f"{c}({s[0].upper()})" for c, s in sorted(o.codes.items())) or "-"


def table(outcomes: list[Outcome]) -> str:
    rows = ["| model | family | label | codes found (E error, W warning, I info) | errors | "
            "ground truth (plain torch) | check s | pass |", "|---|---|---|---|---|---|---|---|"]
    for o in outcomes:
        c = o.case
        label = "healthy" if c.healthy else f"broken: {c.expected}"
        truth = "-" if c.healthy else (", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
                                                 for k, v in (o.truth or {}).items())
                                       + ("" if o.confirmed else " (NOT confirmed)"))
        rows.append(f"| {c.name} | {c.family} | {label} | {_codes(o)} | {len(o.errors)} | {truth} | "
                    f"{o.seconds:.2f} | {'yes' if o.passed else '**NO**'} |")
    return "\n".join(rows)


def summary(outcomes: list[Outcome]) -> str:
    healthy = [o for o in outcomes if o.case.healthy]
    broken = [o for o in outcomes if not o.case.healthy]
    families = {o.case.family for o in healthy}
    false_err = [o.case.name for o in healthy if o.errors or o.error]
    warned = [o.case.name for o in healthy if any(s == "warning" for s in o.codes.values())]
    caught = [o for o in broken if o.passed]
    secs = sorted(o.seconds for o in outcomes if not o.error)
    return "\n".join([
        f"- healthy architectures: {len(healthy)} ({len(families)} families); with an error finding or a "
        f"crash: {len(false_err)} {false_err or ''}",
        f"- healthy with a warning (not a gate failure): {len(warned)} {warned or ''}",
        f"- broken variants: {len(broken)}; fault confirmed by plain torch: "
        f"{sum(bool(o.confirmed) for o in broken)}; caught with the expected code: {len(caught)}/{len(broken)}",
        f"- seconds per check: median {secs[len(secs) // 2]:.2f}, max {secs[-1]:.2f} (one CPU thread)",
    ])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", nargs="*", help="case names")
    ap.add_argument("-v", "--verbose", action="store_true", help="print each report")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    selected = [c for c in cases() if not args.only or c.name in args.only]
    outcomes = []
    for c in selected:
        o, report = run_case(c)
        outcomes.append(o)
        print(f"{c.name:28s} {o.seconds:6.2f}s {_codes(o)}", file=sys.stderr)
        if args.verbose and report is not None:
            print(report, file=sys.stderr)
    print(table(outcomes))
    print()
    print(summary(outcomes))
    return 0 if all(o.passed for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
