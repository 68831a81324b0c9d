"""Byte-level GPT baseline for language modelling, in the style of nanoGPT.

A pre-LayerNorm transformer: learned token and position embeddings, causal self-attention through
``F.scaled_dot_product_attention``, a GELU MLP, a final LayerNorm and a head tied to the token
embedding. The same interface as ``MetriplectorLM``: ``forward(idx, diagnostics=False)`` returns
the logits of every position and an empty list (there is no physics to report), and
``init_state`` / ``step`` generate one byte at a time from a key-value cache.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..core import DynamicsReport
from .layers import KeysValues, empty_cache, gpt2_init


@dataclass
class KVCache:
    """Generation state: the context (``(B, t)``, at most ``block_size`` bytes) and, per layer,
    its keys and values ``(B, heads, t, head_width)``."""

    tokens: Tensor
    layers: list[KeysValues]


class CausalSelfAttention(nn.Module):
    def __init__(self, width: int, heads: int, dropout: float) -> None:
        super().__init__()
        if width % heads:
            raise ValueError(f"width {width} is not divisible by heads {heads}")
        self.heads = heads
        self.dropout = dropout
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)
        self.proj_dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, past: KeysValues | None = None) -> tuple[Tensor, KeysValues]:
        """Attention over ``x`` ``(B, T, C)`` and the cached ``past``; also returns the keys and
        values of everything seen. With a past, ``x`` is one new position."""
        B, T, C = x.shape
        q, k, v = (
            t.view(B, T, self.heads, C // self.heads).transpose(1, 2)
            for t in self.qkv(x).split(C, dim=2)
        )
        if past is not None:
            k, v = torch.cat([past[0], k], 2), torch.cat([past[1], v], 2)
        # Without a past the queries are the keys, masked causally; a single new query may see
        # every cached key.
        y = F.scaled_dot_product_attention(
            q, k, v, dropout_p=self.dropout if self.training else 0.0, is_causal=past is None
        )
        y = y.transpose(1, 2).reshape(B, T, C)
        return self.proj_dropout(self.proj(y)), (k, v)


class MLP(nn.Sequential):
    def __init__(self, width: int, hidden: int, dropout: float) -> None:
        super().__init__(
            nn.Linear(width, hidden), nn.GELU(), nn.Linear(hidden, width), nn.Dropout(dropout)
        )


class Block(nn.Module):
    """Pre-LN transformer block: ``x + attn(ln(x))``, then ``x + mlp(ln(x))``."""

    def __init__(self, width: int, heads: int, mlp_ratio: float, dropout: float) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(width)
        self.attn = CausalSelfAttention(width, heads, dropout)
        self.ln2 = nn.LayerNorm(width)
        self.mlp = MLP(width, round(mlp_ratio * width), dropout)

    def forward(self, x: Tensor, past: KeysValues | None = None) -> tuple[Tensor, KeysValues]:
        y, cache = self.attn(self.ln1(x), past)
        x = x + y
        return x + self.mlp(self.ln2(x)), cache


class GPT(nn.Module):
    """Next-byte logits ``(B, T, vocab_size)`` for byte sequences ``(B, T)``, ``T <= block_size``.

    Generation (``init_state`` / ``step``) keeps every layer's keys and values, so a step costs
    one position's work while the context fits in ``block_size``. Beyond it the context is
    cropped to the last ``block_size`` bytes and, since learned positions are absolute (every
    cached key belongs to a position that has moved), the cache is recomputed from them with a
    full forward at every further step, as nanoGPT's ``generate`` does. A step's logits therefore
    always equal those of ``forward`` on the last ``block_size`` bytes of the context.

    Args:
        vocab_size: number of distinct tokens (256 for bytes).
        block_size: longest context, the number of learned positions.
        layers: transformer blocks.
        heads: attention heads per block; must divide ``width``.
        width: embedding width.
        mlp_ratio: hidden width of the MLP relative to ``width``.
        dropout: dropout on the embeddings, the attention weights and the residual branches.
    """

    def __init__(
        self,
        vocab_size: int = 256,
        block_size: int = 256,
        layers: int = 4,
        heads: int = 6,
        width: int = 192,
        mlp_ratio: float = 4.0,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.block_size, self.vocab_size = block_size, vocab_size
        self.token_embedding = nn.Embedding(vocab_size, width)
        self.position_embedding = nn.Embedding(block_size, width)
        self.dropout = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(Block(width, heads, mlp_ratio, dropout) for _ in range(layers))
        self.ln_f = nn.LayerNorm(width)
        self.head = nn.Linear(width, vocab_size, bias=False)
        self.head.weight = self.token_embedding.weight
        residual = (proj for block in self.blocks for proj in (block.attn.proj, block.mlp[2]))
        gpt2_init(self, residual, layers)

    def _run(
        self, idx: Tensor, cache: list[KeysValues] | None = None
    ) -> tuple[Tensor, list[KeysValues]]:
        """Logits of ``idx`` ``(B, T)`` following the cached positions (none if ``cache`` is
        None), and the updated cache."""
        start = 0 if cache is None else cache[0][0].shape[2]
        positions = torch.arange(start, start + idx.shape[1], device=idx.device)
        x = self.dropout(self.token_embedding(idx) + self.position_embedding(positions))
        new_cache = []
        for i, block in enumerate(self.blocks):
            x, keys_values = block(x, None if cache is None else cache[i])
            new_cache.append(keys_values)
        return self.head(self.ln_f(x)), new_cache

    def forward(self, x: Tensor, diagnostics: bool = False) -> tuple[Tensor, list[DynamicsReport]]:
        """Logits ``(B, T, vocab_size)`` of bytes ``x`` ``(B, T)``; no physics, no reports."""
        if x.shape[1] > self.block_size:
            raise ValueError(
                f"sequence of length {x.shape[1]} is longer than block_size {self.block_size}"
            )
        return self._run(x)[0], []

    def init_state(
        self,
        batch_size: int,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> KVCache:
        """An empty context; the cache has the parameters' device and dtype unless given."""
        weight, heads = self.token_embedding.weight, self.blocks[0].attn.heads
        layers = empty_cache(weight, heads, len(self.blocks), batch_size, device, dtype)
        tokens = torch.empty(batch_size, 0, dtype=torch.long, device=layers[0][0].device)
        return KVCache(tokens, layers)

    def step(self, idx: Tensor, state: KVCache) -> tuple[Tensor, KVCache]:
        """Append the bytes ``idx`` ``(B,)`` to the context: the next-byte logits ``(B, vocab)``
        and the new state."""
        tokens = torch.cat([state.tokens, idx[:, None]], 1)
        if tokens.shape[1] <= self.block_size:
            logits, cache = self._run(idx[:, None], state.layers)
        else:
            tokens = tokens[:, -self.block_size :]
            logits, cache = self._run(tokens)
        return logits[:, -1], KVCache(tokens, cache)
