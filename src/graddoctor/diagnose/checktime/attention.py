"""``poor-init`` for a Transformer drawn too large: large weights and a nearly one-hot attention.

The init probe's forward reads the entropy of every attention softmax
(``measure.probe_softmax.attention_entropy``: 1 is uniform over the keys, 0 one-hot). The
finding needs two things on weights that look freshly drawn (``measure.trained.looks_trained``):

- the median attention entropy over the sites under ``SATURATED_ENTROPY``, and
- the Linear weights drawn large: the median over Linear layers of ``std * sqrt(fan_in)`` (1 at
  LeCun's and a square Xavier's scale, 0.58 at PyTorch's default, 0.16-0.55 for a Hugging Face
  model at ``initializer_range`` 0.02) at least ``SCALE_FLOOR``.

Why both: peaked attention alone is no fault. A held-out scoring (``hidden 32, 2 layers, AdamW
1e-3, 200 steps, 2 seeds``) found it on a model trained for a few hundred steps (Llama, GPT-NeoX,
Qwen2: entropy 0.19-0.32, the spectral test of ``looks_trained`` not yet past 1.2), on BLOOM's own
ALiBi bias at 512-1024 tokens (0.65-0.77), and on the query/key weights alone scaled up (Llama
q/k x25 trains like its twin, 0.075 vs 0.069): none drawn large. And where the whole model is
drawn large the damage comes mostly from the other weights (Llama at 0.5 with q/k put back at
default still fails: 1.89 vs 0.069), so the message names the weight scale, with the attention as
its visible sign. Calibrated on Hugging Face BERT and GPT-2 (hidden 64, 4 layers, 300 steps):
``initializer_range`` 0.02 reads entropy 1.00 (BERT accuracy 0.93-0.94, GPT-2 copy loss 1.89);
0.2: entropy median 0.61-0.69, scale 1.6 (BERT at chance, 0.49-0.50); 0.5 and 1.0: entropy
0.02-0.12 (neither learns). Held out (the scoring above), fired and harmful in both seeds: Llama,
Qwen2, GPT-NeoX, Falcon, ViT at 1.0, DeBERTa-v2 at 0.5 and 1.0, ``nn.TransformerEncoder`` and
hand-written ``nn.MultiheadAttention``/``F.scaled_dot_product_attention`` models with every
matrix x4 and x8; not harmful though fired by the entropy alone: ViT at 0.5, BLOOM at 0.5.
Missed: Llama/Qwen2 at 0.2 (entropy 0.73-0.82), T5 (its init scales by ``(d_model d_kv)^-1/2``),
and attention computed as a 3-axis softmax in a module whose class name does not say attention.
Before this rule ``check`` said nothing on BERT at 0.2 nor GPT-2 at 0.5.

Example:
    >>> import torch
    >>> from torch import nn
    >>> from graddoctor.measure.probe_softmax import AttentionSite
    >>> sites = [AttentionSite(f"layer.{i}.attn", 0.3, 16, 64) for i in range(4)]
    >>> big = nn.Linear(64, 64)
    >>> _ = nn.init.normal_(big.weight, std=1.0)
    >>> attention_init(sites, big).evidence["weight_scale"] > 4
    True
    >>> attention_init(sites, nn.Linear(64, 64)) is None  # PyTorch's default scale: peaked on purpose
    True
"""

from __future__ import annotations

import math
import statistics

import torch
from torch import nn

from graddoctor.measure.probe_softmax import AttentionSite
from graddoctor.measure.trained import looks_trained
from graddoctor.report import Finding

#: the median normalised attention entropy under which the attention is nearly one-hot
SATURATED_ENTROPY = 0.75
#: the median ``std * sqrt(fan_in)`` over Linear weights from which they are drawn large
SCALE_FLOOR = 1.5
#: at most this many Linear layers, and entries of each, are read for the scale
MAX_LAYERS, MAX_ENTRIES = 64, 65536
REF = ("Vaswani et al. 2017 (NeurIPS, sec. 3.2.1: large dot products push the softmax into regions "
       "with extremely small gradients); Zhai et al. 2023 (ICML, attention entropy collapse)")


def attention_init(sites: list[AttentionSite], model: nn.Module) -> Finding | None:
    """``poor-init`` when the median attention entropy of ``sites`` is under ``SATURATED_ENTROPY``
    and the weights look freshly drawn, else None."""
    if not sites:
        return None
    med = statistics.median(s.entropy for s in sites)
    if med >= SATURATED_ENTROPY:
        return None
    scale, layers = weight_scale(model)
    if not scale >= SCALE_FLOOR or looks_trained(model):
        return None
    low = min(sites, key=lambda s: s.entropy)
    flagged = [s.name for s in sites if s.entropy < SATURATED_ENTROPY]
    keys = max(s.keys for s in sites)
    ev = {"attention_entropy_median": round(med, 4), "attention_entropy_min": round(low.entropy, 4),
          "attention_sites": len(sites), "sites_under": len(flagged), "keys": keys,
          "threshold": SATURATED_ENTROPY, "weight_scale": round(scale, 2), "scale_floor": SCALE_FLOOR,
          "linear_layers_read": layers}
    msg = (f"the Transformer's weights are drawn large ({scale:.1f}x LeCun's scale: median std*sqrt(fan_in) "
           f"over {layers} Linear layers) and its attention is nearly one-hot at initialisation: entropy "
           f"{med:.0%} of uniform over up to {keys} keys (median over {len(sites)} attention sites; lowest "
           f"{low.entropy:.0%} in {low.name or 'the model'}) - large logits and activations from the first "
           "step; draw the weights at the usual Transformer scale (small-init: std sqrt(2/(5 fan_in)), "
           "~0.02 at width 1000)")
    return Finding("poor-init", "warning", msg, flagged, ev, ["small-init", "xavier-init"], 0, REF)


def weight_scale(model: nn.Module) -> tuple[float, int]:
    """(median over trainable Linear layers, Hugging Face ``Conv1D`` too, of ``std(W) * sqrt(fan_in)``,
    layers read); at most
    ``MAX_LAYERS`` layers spread over the model and ``MAX_ENTRIES`` strided entries of each (nan, 0
    without any).

    Example:
        >>> _ = torch.manual_seed(0)
        >>> round(weight_scale(nn.Linear(300, 300))[0], 2)  # PyTorch's default: 1/sqrt(3)
        0.58
    """
    lins = [m for m in model.modules() if (isinstance(m, nn.Linear) or type(m).__name__ == "Conv1D")
            and isinstance(getattr(m, "weight", None), torch.Tensor) and m.weight.requires_grad
            and m.weight.dim() == 2 and m.weight.numel() > 1]
    if not lins:
        return math.nan, 0
    lins = lins[:: max(1, len(lins) // MAX_LAYERS)][:MAX_LAYERS]
    vals = []
    with torch.no_grad():
        for m in lins:
            w = m.weight.detach().flatten()
            w = w[:: max(1, w.numel() // MAX_ENTRIES)].float()
            fan_in = m.weight.shape[0 if type(m).__name__ == "Conv1D" else 1]  # HF GPT-2's Conv1D: (in, out)
            vals.append(float(w.std()) * math.sqrt(fan_in))
    return statistics.median(vals), len(lins)


__all__ = ["SATURATED_ENTROPY", "SCALE_FLOOR", "attention_init", "weight_scale"]
