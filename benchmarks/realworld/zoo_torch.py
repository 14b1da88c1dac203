"""Models built from torch's own modules: nn.Transformer, encoder stacks, LSTM/GRU models, a TCN."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

G = torch.Generator().manual_seed(0)


def _x(*shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(0))


def transformer_seq2seq():
    """``nn.Transformer`` (post-LN, PyTorch's default) as a seq2seq model."""

    class Seq2Seq(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.src_emb, self.tgt_emb = nn.Embedding(100, 64), nn.Embedding(100, 64)
            self.transformer = nn.Transformer(64, 4, 3, 3, 128, batch_first=True)
            self.generator = nn.Linear(64, 100)

        def forward(self, src: torch.Tensor, tgt: torch.Tensor) -> torch.Tensor:
            mask = self.transformer.generate_square_subsequent_mask(tgt.shape[1])
            return self.generator(self.transformer(self.src_emb(src), self.tgt_emb(tgt), tgt_mask=mask))

    ids = torch.randint(0, 100, (4, 12), generator=torch.Generator().manual_seed(0))
    return Seq2Seq(), (ids, ids[:, :8])


def encoder(norm_first: bool):
    def make():
        layer = nn.TransformerEncoderLayer(64, 4, 128, batch_first=True, norm_first=norm_first)
        return nn.TransformerEncoder(layer, 6, enable_nested_tensor=False), _x(4, 16, 64)
    return make


def decoder_lm():
    """A GPT-style LM from ``nn.TransformerDecoderLayer`` run with memory=None via the encoder stack."""

    class LM(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.wte, self.wpe = nn.Embedding(100, 64), nn.Embedding(32, 64)
            layer = nn.TransformerEncoderLayer(64, 4, 256, batch_first=True, norm_first=True, activation="gelu")
            self.blocks = nn.TransformerEncoder(layer, 4, enable_nested_tensor=False)
            self.ln_f, self.lm_head = nn.LayerNorm(64), nn.Linear(64, 100, bias=False)

        def forward(self, ids: torch.Tensor) -> torch.Tensor:
            t = ids.shape[1]
            h = self.wte(ids) + self.wpe(torch.arange(t))
            mask = nn.Transformer.generate_square_subsequent_mask(t)
            return self.lm_head(self.ln_f(self.blocks(h, mask=mask, is_causal=True)))

    return LM(), torch.randint(0, 100, (4, 16), generator=torch.Generator().manual_seed(0))


class RNNClassifier(nn.Module):
    def __init__(self, cell: str, bidirectional: bool = False, layers: int = 2) -> None:
        super().__init__()
        self.rnn = getattr(nn, cell)(8, 32, layers, batch_first=True, bidirectional=bidirectional)
        self.fc = nn.Linear(64 if bidirectional else 32, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.rnn(x)[0][:, -1])


def lstm():
    return RNNClassifier("LSTM"), _x(4, 50, 8)


def gru():
    return RNNClassifier("GRU"), _x(4, 50, 8)


def bilstm_tagger():
    class Tagger(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.emb = nn.Embedding(100, 32)
            self.lstm = nn.LSTM(32, 32, batch_first=True, bidirectional=True)
            self.out = nn.Linear(64, 9)

        def forward(self, ids: torch.Tensor) -> torch.Tensor:
            return self.out(self.lstm(self.emb(ids))[0])

    return Tagger(), torch.randint(0, 100, (4, 40), generator=torch.Generator().manual_seed(0))


def tcn():
    """A temporal convolutional net: dilated causal Conv1d blocks with residual connections (Bai et al. 2018)."""

    class Block(nn.Module):
        def __init__(self, c: int, d: int) -> None:
            super().__init__()
            self.conv1, self.conv2 = nn.Conv1d(c, c, 3, padding=2 * d, dilation=d), nn.Conv1d(c, c, 3, padding=2 * d,
                                                                                              dilation=d)
            self.relu = nn.ReLU()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            t = x.shape[-1]
            y = self.relu(self.conv1(x)[..., :t])
            return self.relu(x + self.conv2(y)[..., :t])

    class TCN(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inp = nn.Conv1d(4, 32, 1)
            self.network = nn.Sequential(*[Block(32, 2 ** i) for i in range(6)])
            self.head = nn.Linear(32, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(self.network(self.inp(x))[..., -1])

    return TCN(), _x(4, 4, 64)


BUILTIN_MODELS: dict[str, tuple[str, Callable]] = {
    "nn.Transformer-seq2seq": ("torch-transformer", transformer_seq2seq),
    "nn.TransformerEncoder-postLN": ("torch-transformer", encoder(False)),
    "nn.TransformerEncoder-preLN": ("torch-transformer", encoder(True)),
    "decoder-LM-preLN": ("torch-transformer", decoder_lm),
    "lstm-2layer": ("torch-rnn", lstm), "gru-2layer": ("torch-rnn", gru),
    "bilstm-tagger": ("torch-rnn", bilstm_tagger), "tcn": ("torch-conv1d", tcn),
}
