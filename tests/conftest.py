"""Suite-wide settings: one torch thread (the models under test are tiny, and on a shared
2-core machine torch's thread pool spends more time waiting than computing). Test files rely on
this instead of setting threads themselves; code that changes the count restores it."""

from __future__ import annotations

import torch

torch.set_num_threads(1)
