"""A modern small GPT baseline for byte-level language modelling.

Pre-norm transformer in the style of current small language models: RMSNorm, rotary position
embeddings (RoPE) on queries and keys, causal self-attention through
``F.scaled_dot_product_attention``, a SwiGLU MLP, no biases anywhere, and an output layer tied to
the token embedding or not (``tie_weights``). The same interface as ``MetriplectorLM`` and
``GPT``: ``forward(idx, diagnostics=False)`` returns the logits and an empty list (no physics),
``init_state`` / ``step`` generate one byte at a time from a key-value cache.

Attention is local: every position attends to the last ``block_size`` positions (itself
included). Training windows of ``block_size`` bytes see plain causal attention; longer inputs
(and generation past ``block_size`` bytes) use the same sliding window, which rotary positions
make consistent (scores depend on relative positions only), so the cache keeps the last
``block_size`` keys and a step costs the same at any context length.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..core import DynamicsReport
from .layers import GatedMLP, KeysValues, empty_cache, gpt2_init


def rotary(positions: Tensor, head_width: int, base: float, dtype: torch.dtype) -> Tensor:
    """``(cos, sin)`` stacked, ``(2, T, head_width / 2)``, of the angles ``position * base^(-2i /
    head_width)``; computed in float64 so that long contexts keep their precision."""
    exponent = torch.arange(0, head_width, 2, device=positions.device, dtype=torch.float64)
    angle = positions.double()[:, None] * base ** (-exponent / head_width)
    return torch.stack([angle.cos(), angle.sin()]).to(dtype)


def apply_rotary(x: Tensor, angles: Tensor) -> Tensor:
    """Rotate the two halves of the last axis of ``x`` ``(B, H, T, D)`` as pairs ``(x_i, x_{i +
    D/2})`` by the angles of ``rotary``."""
    first, second = x.chunk(2, dim=-1)
    cos, sin = angles
    return torch.cat([first * cos - second * sin, first * sin + second * cos], -1)


@dataclass
class RotaryCache:
    """Generation state: how many bytes were seen, and per layer the keys (rotated) and values
    ``(B, heads, t, head_width)`` of the last ``t <= block_size - 1`` of them."""

    position: int
    layers: list[KeysValues]


class RotaryAttention(nn.Module):
    """Causal self-attention over a sliding window of ``window`` positions, rotary positions, no
    biases."""

    def __init__(self, width: int, heads: int, window: int, base: float, dropout: float) -> None:
        super().__init__()
        if width % heads or (width // heads) % 2:
            raise ValueError(f"width {width} must split into {heads} heads of even width")
        self.heads, self.window, self.base, self.dropout = heads, window, base, dropout
        self.qkv = nn.Linear(width, 3 * width, bias=False)
        self.proj = nn.Linear(width, width, bias=False)
        self.proj_dropout = nn.Dropout(dropout)

    def forward(
        self, x: Tensor, start: int = 0, past: KeysValues | None = None
    ) -> tuple[Tensor, KeysValues]:
        """Attention of ``x`` ``(B, T, C)`` at positions ``start, start + 1, ...`` over itself
        and the cached ``past`` (the positions right before ``start``); also returns the keys
        and values of the last ``window - 1`` positions, for the next step."""
        B, n, C = x.shape
        q, k, v = (
            t.view(B, n, self.heads, C // self.heads).transpose(1, 2)
            for t in self.qkv(x).split(C, dim=2)
        )
        positions = torch.arange(start, start + n, device=x.device)
        angles = rotary(positions, C // self.heads, self.base, x.dtype)
        q, k = apply_rotary(q, angles), apply_rotary(k, angles)
        if past is not None:
            k, v = torch.cat([past[0], k], 2), torch.cat([past[1], v], 2)
        keys = k.shape[2]
        dropout = self.dropout if self.training else 0.0
        if past is None and n <= self.window:  # plain causal attention
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout, is_causal=True)
        elif n == 1 and keys <= self.window:  # one step: every cached key is in the window
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout)
        else:  # query i (key position keys - n + i) sees keys j with 0 <= i' - j < window
            query = torch.arange(keys - n, keys, device=x.device)[:, None]
            offset = query - torch.arange(keys, device=x.device)
            mask = (offset >= 0) & (offset < self.window)
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout)
        y = y.transpose(1, 2).reshape(B, n, C)
        first = max(keys - self.window + 1, 0)  # the next query's window starts here
        cache = (k[:, :, first:], v[:, :, first:])
        return self.proj_dropout(self.proj(y)), cache


class ModernBlock(nn.Module):
    """``x + attn(rms(x))``, then ``x + swiglu(rms(x))``."""

    def __init__(
        self, width: int, heads: int, hidden: int, window: int, base: float, dropout: float
    ) -> None:
        super().__init__()
        self.norm1 = nn.RMSNorm(width)
        self.attn = RotaryAttention(width, heads, window, base, dropout)
        self.norm2 = nn.RMSNorm(width)
        self.mlp = GatedMLP(width, hidden, dropout)

    def forward(
        self, x: Tensor, start: int = 0, past: KeysValues | None = None
    ) -> tuple[Tensor, KeysValues]:
        y, cache = self.attn(self.norm1(x), start, past)
        x = x + y
        return x + self.mlp(self.norm2(x)), cache


class ModernGPT(nn.Module):
    """Next-byte logits ``(B, T, vocab_size)`` for byte sequences ``(B, T)``, any ``T``.

    Generation (``init_state`` / ``step``) keeps the keys and values of the last ``block_size -
    1`` bytes per layer; a step's logits equal those of ``forward`` on the whole context.

    Args:
        vocab_size: number of distinct tokens (256 for bytes).
        block_size: attention window: each position sees this many positions (itself included).
        layers: transformer blocks.
        heads: attention heads per block; ``width / heads`` must be even.
        width: embedding width.
        mlp_ratio: hidden width of the SwiGLU MLP relative to ``width`` (rounded).
        rope_base: base of the rotary frequencies.
        dropout: dropout on the embeddings, the attention weights and the residual branches.
        tie_weights: share the embedding with the output layer.
    """

    def __init__(
        self,
        vocab_size: int = 256,
        block_size: int = 256,
        layers: int = 4,
        heads: int = 6,
        width: int = 192,
        mlp_ratio: float = 8 / 3,
        rope_base: float = 10000.0,
        dropout: float = 0.0,
        tie_weights: bool = True,
    ) -> None:
        super().__init__()
        self.block_size, self.vocab_size = block_size, vocab_size
        self.token_embedding = nn.Embedding(vocab_size, width)
        self.dropout = nn.Dropout(dropout)
        hidden = round(mlp_ratio * width)
        self.blocks = nn.ModuleList(
            ModernBlock(width, heads, hidden, block_size, rope_base, dropout) for _ in range(layers)
        )
        self.norm = nn.RMSNorm(width)
        self.head = nn.Linear(width, vocab_size, bias=False)
        residual = (proj for block in self.blocks for proj in (block.attn.proj, block.mlp.down))
        gpt2_init(self, residual, layers)
        if tie_weights:
            self.head.weight = self.token_embedding.weight

    def _run(
        self, idx: Tensor, start: int = 0, cache: list[KeysValues] | None = None
    ) -> tuple[Tensor, list[KeysValues]]:
        x = self.dropout(self.token_embedding(idx))
        new_cache = []
        for i, block in enumerate(self.blocks):
            x, keys_values = block(x, start, None if cache is None else cache[i])
            new_cache.append(keys_values)
        return self.head(self.norm(x)), new_cache

    def forward(self, x: Tensor, diagnostics: bool = False) -> tuple[Tensor, list[DynamicsReport]]:
        """Logits ``(B, T, vocab_size)`` of bytes ``x`` ``(B, T)``; no physics, no reports."""
        return self._run(x)[0], []

    def init_state(
        self,
        batch_size: int,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> RotaryCache:
        """An empty context; the cache has the parameters' device and dtype unless given."""
        weight, heads = self.token_embedding.weight, self.blocks[0].attn.heads
        layers = empty_cache(weight, heads, len(self.blocks), batch_size, device, dtype)
        return RotaryCache(0, layers)

    def step(self, idx: Tensor, state: RotaryCache) -> tuple[Tensor, RotaryCache]:
        """Append the bytes ``idx`` ``(B,)`` to the context: the next-byte logits ``(B, vocab)``
        and the new state."""
        logits, cache = self._run(idx[:, None], state.position, state.layers)
        return logits[:, -1], RotaryCache(state.position + 1, cache)
