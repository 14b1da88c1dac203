"""post-ln-no-warmup: a post-LN Transformer trained at full learning rate from step 1 that
does not move.

A post-LN block (``x = LN(x + f(x))``) has large output-side gradients at initialisation;
full-size Adam steps from the first step throw it onto a plateau it does not leave, which a
learning-rate warm-up (or pre-LN blocks) avoids (Xiong et al. 2020, sec. 3; Liu et al. 2020,
"Understanding the difficulty of training Transformers", sec. 3). The rule needs all three:

- **post-LN**: at least ``MIN_POST_BLOCKS`` (6) blocks, and in most Transformer blocks the first weight layer to run is the attention,
  not a norm, and a norm sits on the skip path (its shortest path from the input no longer than
  the block's first layer's). Norms on the branches only (``x + LN(f(x))``: OLMo-2's reordered
  norm, Swin v2's res-post-norm, query/key norms) leave the residual stream unnormalised, and
  OLMo-2 trains without warm-up (a healthy tiny OLMo-2 on a copy task sits at ln V for 100
  steps at AdamW 1e-3, then falls: it was taken for this fault and "repaired" 80 steps back).
  A block is the deepest module holding an attention layer (``kind ==
  "attention"`` or a name part with "attn"/"attention") and a norm layer; execution order
  comes from the meta (a pre-LN block runs its norm first: GPT-2 ``h.0.ln_1``, Llama
  ``input_layernorm``; a post-LN one its attention: BERT, ``nn.TransformerEncoderLayer``);
- **no warm-up**: the recorded learning rate at the first step is already >= ``RAMP_FRAC`` of
  its maximum over the first ``progress.EARLY_STEPS`` steps;
- **stuck**: the loss has not moved (``progress.loss_progress``), or it fell within the first
  ``SETTLE_STEPS`` steps (large initial logits falling to the class prior) and has not moved
  since: its level at the end of the first ``progress.EARLY_STEPS`` steps >= ``STUCK_FRAC`` x
  its median over steps ``SETTLE_STEPS``..``SETTLE_STEPS + 10`` (nn.TransformerEncoder post-LN,
  Adam 1e-2, d=64: 2.64 -> 2.34 in 20 steps, then flat at chance);
- **collapsed**: the global gradient norm has fallen to ``GRAD_FALL`` of its start (median of
  the last 10 recorded steps vs the first 10): the net has slid onto a flat plateau. A loss
  plateau the net is still working through keeps or grows its gradient. Measured over steps
  1-80 (watch records): the stuck post-LN faults of the autofix benchmark fall to 0.47-0.66
  (zoo Transformer, 8 blocks, Adam 1e-2; nn.TransformerEncoder 6 layers d=64, Adam 1e-2);
  healthy 2-layer BERT / DistilBERT (AdamW 1e-4 / 2e-4, no warm-up) on a task whose loss
  sits at ln 2 for 100 steps before it falls to 0 stay at 1.0-1.3;
- **full-size steps**: the first recorded steps moved the weights by at least ``MIN_STEP`` of
  their size (the largest median update/weight ratio over the body, steps 1-4; Adam's first step
  is lr / rms(w)). Measured: the stuck faults of both training suites start at 0.018-0.13
  (lr 2e-3 .. 1e-2); a tiny BERT at AdamW 5e-5 (the HF default) starts at 0.0025: its loss is
  flat because its steps are small, and a warm-up (a smaller rate still) is the wrong advice.
  Runs that record no update sizes (no optimizer given) are judged without this point;
- **and it stays stuck**: a run whose loss later falls below ``LATE_FALL`` of its early level
  left the plateau - a slow start, not this fault: a tiny BART on sequence reversal (AdamW
  1e-3, no warm-up: 4.11 at step 100, 0.50 at step 300); a 2-layer BERT masked LM on a bigram
  task (AdamW 5e-4, no warm-up: 4.85 at step 150, 4.13 at step 300, the curve it follows with
  a 30-step warm-up too). The stuck faults of the autofix benchmark stay within 1% of their
  level (at chance) to the end.

Example:
    >>> meta = {"layers": [{"name": "emb", "kind": "linear"}] + [
    ...     {"name": f"b.{i}.{n}", "kind": k} for i in range(6)
    ...     for n, k in (("attn", "attention"), ("norm1", "norm"), ("ff", "linear"), ("norm2", "norm"))]}
    >>> steps = [{"step": t, "loss": 2.3, "lr": 1e-3, "grad_norm": {"b.0.ff": 1.0 if t < 20 else 0.5}}
    ...          for t in range(1, 61)]
    >>> [(f.code, f.remedies) for f in post_ln_no_warmup(meta, steps)]
    [('post-ln-no-warmup', ['warmup', 'prenorm'])]
"""

from __future__ import annotations

import numpy as np

from graddoctor.diagnose.training.instability import median_update_ratios
from graddoctor.diagnose.training.progress import (
    EARLY_STEPS,
    MIN_STEPS,
    STUCK_FRAC,
    finite_losses,
    loss_progress,
)
from graddoctor.diagnose.training.series import as_float, used_steps
from graddoctor.report import Finding

#: the first step's LR at or above this fraction of the early maximum: no warm-up
RAMP_FRAC = 0.5
#: steps in which a stuck post-LN net's loss falls from its initial level to the class prior
SETTLE_STEPS = 20
#: the fewest post-LN blocks for this fault: the amplification of a post-LN stack's output by its
#: updates grows with its depth (Liu et al. 2020, sec. 4; Xiong et al. 2020: the last layer's
#: gradient grows with depth), and shallow post-LN nets train without a warm-up. Held out: a
#: 2-layer BERT, RoBERTa and DistilBERT masked LM and a 2+2-layer BART (4 blocks) at AdamW 1e-3
#: without warm-up sit at ln V for 50-150 steps and then learn; restarted with a warm-up at step 50
#: they did worse (DistilBERT 4.85 against 4.57 at 200 steps, BERT 4.58 against 3.42 at 500, BART
#: 1.24 against 0.74 at 300). The stuck faults of both training suites have 6 to 16 blocks
MIN_POST_BLOCKS = 6
#: a stuck run whose gradient norm fell to this fraction of its start has collapsed. Set at 0.8
#: between the faults' 0.47-0.66 and healthy 2-layer BERT/DistilBERT's 1.0-1.3; raised to 0.9
#: (still under the healthy 1.0) when the 16-layer nn.TransformerEncoder of the realistic suite's
#: held-out half (Adam 2e-3, seed 3), at chance for 300 steps, read 0.806 on 1 thread and 0.796
#: on 2: a line that float rounding moved across. Tried and reverted: no gradient condition at all
#: (the later gates, 6 blocks and full-size steps, exclude the 2-layer BERTs it was set on). It
#: fixed 2 more benchmark rows (a-tf-post12-nowarmup s1-s2, Adam 3e-3, 12 blocks: slow, gradient
#: growing to 1.5-2.3x), but held out, on 6-layer Hugging Face and nn.TransformerEncoder
#: classifiers without warm-up, it acted on 5 runs whose gradient grew (1.1-15x at step 50): a
#: BERT classifier at AdamW 3e-4 that learnt on its own ended worse on 2 seeds (0.207 -> 0.532,
#: 0.155 -> 0.245), the three at 3e-3 ended better
GRAD_FALL = 0.9
#: a loss that later falls below this fraction of its early level has left the plateau
LATE_FALL = 0.9
#: the first steps' median update/weight ratio from which they are full-size steps
MIN_STEP = 0.01
#: the steps read for it
FIRST_STEPS = 4

REF = ("Xiong et al. 2020 (ICML, On Layer Normalization in the Transformer Architecture, sec. 3); "
       "Liu et al. 2020 (EMNLP, Understanding the Difficulty of Training Transformers, sec. 3)")


def _is_attention(layer: dict) -> bool:
    parts = layer["name"].lower().split(".")
    return layer.get("kind") == "attention" or any("attn" in p or "attention" in p for p in parts)


def block_norm_order(meta: dict) -> dict[str, str]:
    """Block name -> "pre" | "post" | "branch": which runs first in it, a norm or the attention;
    a block whose norms all sit on its branches (``_post_or_branch``) is "branch", not post-LN.

    Example:
        >>> block_norm_order({"layers": [{"name": "h.0.ln_1", "kind": "norm"},
        ...                              {"name": "h.0.attn.c_attn", "kind": "linear"}]})
        {'h.0': 'pre'}
    """
    layers = meta.get("layers", [])
    norms = [ly["name"] for ly in layers if ly.get("kind") == "norm"]
    out: dict[str, str] = {}
    for ly in layers:
        if not _is_attention(ly):
            continue
        parts = ly["name"].split(".")
        for k in range(len(parts) - 1, 0, -1):
            block = ".".join(parts[:k])
            if any(n.startswith(block + ".") for n in norms):
                if block not in out:
                    first = next(x for x in layers if x["name"].startswith(block + ".")
                                 and (x.get("kind") == "norm" or _is_attention(x) or x.get("kind") == "linear"))
                    out[block] = "pre" if first.get("kind") == "norm" else _post_or_branch(layers, block, first)
                break
    # BERT: layer.0.attention (self-attention + attention.output.LayerNorm) holds the nested
    # block layer.0.attention.output: one block, counted once
    return {b: o for b, o in out.items() if not any(b.startswith(a + ".") for a in out)}


def _post_or_branch(layers: list[dict], block: str, first: dict) -> str:
    """"post" when a norm of ``block`` sits on its skip path (its shortest path from the input is
    no longer than the block's first layer's: ``LN(x + f(x))``); "branch" when every norm is
    deeper, on the branches only (``x + LN(f(x))``: OLMo-2, Swin v2; a pre-LN block's query/key
    norms), whose residual stream is never normalised. "post" without the depths (no map)."""
    norms = [ly.get("min_depth") for ly in layers if ly.get("kind") == "norm" and ly["name"].startswith(block + ".")]
    norms = [d for d in norms if d is not None]  # a norm the traced forward never called: no word
    lo = first.get("min_depth")
    if lo is None or not norms:
        return "post"
    return "post" if min(norms) <= lo else "branch"


def flat_after_settling(steps: list[dict]) -> bool:
    """The loss level at the end of the early window >= ``STUCK_FRAC`` x its level just after
    ``SETTLE_STEPS`` (a run that learnt nothing after a first fall to the class prior).

    Example:
        >>> flat_after_settling([{"step": t, "loss": 2.3 + 3.0 / t} for t in range(1, 101)])
        True
        >>> flat_after_settling([{"step": t, "loss": 2.3 * 0.99 ** t} for t in range(1, 101)])
        False
    """
    st = [s for s in used_steps(steps) if int(s.get("step", 0)) <= EARLY_STEPS]
    settled = np.array([as_float(s.get("loss")) for s in st
                        if SETTLE_STEPS <= int(s.get("step", 0)) < SETTLE_STEPS + 10])
    loss = finite_losses(steps)
    settled = settled[np.isfinite(settled)]
    if len(loss) < MIN_STEPS or not len(settled):
        return False
    ref = float(np.median(settled))
    return bool(ref > 0 and float(np.median(loss[-10:])) >= STUCK_FRAC * ref)


def gradient_fall(steps: list[dict]) -> float:
    """The global gradient norm's median over the last 10 steps of the early window over its
    median over the first 10 (nan when fewer than 20 steps record gradients).

    Example:
        >>> round(gradient_fall([{"step": t, "grad_norm": {"a": 3.0 / t ** 0.5, "b": 4.0 / t ** 0.5}}
        ...                      for t in range(1, 41)]), 2)
        0.39
    """
    norms = []
    for s in used_steps(steps):
        g = s.get("grad_norm")
        if int(s.get("step", 0)) > EARLY_STEPS or not isinstance(g, dict):
            continue
        v = np.array([as_float(x) for x in g.values()], dtype=float)
        v = v[np.isfinite(v)]
        if len(v):
            norms.append(float(np.sqrt((v ** 2).sum())))
    if len(norms) < 20:
        return float("nan")
    first = float(np.median(norms[:10]))
    return float(np.median(norms[-10:])) / first if first > 0 else float("nan")


def first_step_size(meta: dict, steps: list[dict]) -> float:
    """The largest median update/weight ratio of the body over steps 1..``FIRST_STEPS`` (nan when
    none was recorded).

    Example:
        >>> meta = {"layers": [{"name": "a", "kind": "linear"}, {"name": "b", "kind": "linear"}]}
        >>> first_step_size(meta, [{"step": 1, "update_ratio": {"a": 0.02, "b": 0.04}}])
        0.03
    """
    t, med = median_update_ratios(meta, steps, body=True)
    first = [m for s, m in zip(t, med) if s <= FIRST_STEPS and np.isfinite(m)]
    return float(max(first)) if first else float("nan")


def post_ln_blocks(meta: dict, order: dict[str, str] | None = None) -> list[str]:
    """The post-LN blocks of a model that is a post-LN stack (most of its blocks, at least
    ``MIN_POST_BLOCKS``), else []. ``order``: ``block_norm_order(meta)`` when already read.

    Example:
        >>> post_ln_blocks({"layers": [{"name": "b.0.attn", "kind": "attention"},
        ...                            {"name": "b.0.norm", "kind": "norm"}]})
        []
    """
    order = block_norm_order(meta) if order is None else order
    post = [b for b, o in order.items() if o == "post"]
    return post if len(post) * 2 > len(order) and len(post) >= MIN_POST_BLOCKS else []


def post_ln_no_warmup(meta: dict, steps: list[dict]) -> list[Finding]:
    """Post-LN blocks, no LR warm-up, and a loss that has not moved.

    Example:
        >>> post_ln_no_warmup({"layers": []}, [])
        []
    """
    order = block_norm_order(meta)
    post = post_ln_blocks(meta, order)
    if not post:
        return []
    lr = np.array([as_float(s.get("lr")) for s in used_steps(steps) if int(s.get("step", 0)) <= EARLY_STEPS])
    lr = lr[np.isfinite(lr)]
    if not len(lr) or lr.max() <= 0 or lr[0] < RAMP_FRAC * lr.max():
        return []
    step_size = first_step_size(meta, steps)
    if step_size < MIN_STEP:  # nan (no update sizes recorded) passes: judged without it
        return []
    prog = loss_progress(steps)
    if not (prog["stuck"] or flat_after_settling(steps)):
        return []
    fall = gradient_fall(steps)
    if not fall <= GRAD_FALL:  # nan (no gradients recorded) too: no evidence of a collapse
        return []
    loss = finite_losses(steps, early=10 ** 12)  # the whole run
    if len(loss) >= MIN_STEPS and float(np.median(loss[-10:])) < LATE_FALL * prog["level"]:
        return []  # it left the plateau later: a slow start
    ev = {"post_ln_blocks": len(post), "blocks": len(order), "lr_first": float(lr[0]),
          "lr_max_early": float(lr.max()), "loss_start": round(prog["start"], 4),
          "loss_stuck_from_start": prog["stuck"], "stuck_after_settling": not prog["stuck"],
          "loss_level": round(prog["level"], 4), "level_over_start": round(prog["ratio"], 3),
          "grad_norm_fall": round(fall, 3), "first_update_ratio": round(step_size, 4)}
    msg = (f"{len(post)} of {len(order)} Transformer blocks are post-LN (the attention runs before "
           f"the norm) and the learning rate starts at its full value {lr[0]:.3g} with no warm-up; "
           f"the loss has not moved ({prog['level']:.4g} vs {prog['start']:.4g} at the start) and the "
           f"gradient norm fell to {fall:.2f} of its start (collapsed onto a plateau)")
    first = int(used_steps(steps)[0].get("step", 1)) if used_steps(steps) else None
    return [Finding("post-ln-no-warmup", "error", msg, post, ev, ["warmup", "prenorm"], first, REF)]


__all__ = ["FIRST_STEPS", "GRAD_FALL", "LATE_FALL", "MIN_STEP", "RAMP_FRAC", "SETTLE_STEPS", "block_norm_order",
           "first_step_size", "flat_after_settling", "gradient_fall", "post_ln_blocks",
           "post_ln_no_warmup"]
