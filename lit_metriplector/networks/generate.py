"""Autoregressive sampling for any network with ``init_state(batch_size, device=None,
dtype=None)`` and ``step(idx, state) -> (logits, state)``: ``MetriplectorLM``,
``LinearRecurrentLM``, ``GPT`` and ``ModernGPT``. The state is opaque here (a tensor, a tuple or
a cache object, as the network likes)."""

from __future__ import annotations

import torch
from torch import Tensor, nn


def sample(
    logits: Tensor,
    temperature: float = 1.0,
    top_k: int | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """One token per row of ``logits`` ``(B, vocab)``: argmax at temperature 0, otherwise drawn
    from the softmax of ``logits / temperature`` restricted to the ``top_k`` likeliest."""
    if temperature == 0:
        return logits.argmax(-1)
    logits = logits.float() / temperature
    if top_k is not None:
        kth = torch.topk(logits, min(top_k, logits.shape[-1])).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    return torch.multinomial(logits.softmax(-1), 1, generator=generator)[:, 0]


@torch.no_grad()
def generate(
    network: nn.Module,
    prompt: Tensor,
    max_new_bytes: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """The prompt ``(B, P)`` continued by ``max_new_bytes`` sampled bytes, ``(B, P + new)``.

    The prompt is fed through ``step`` one byte at a time, then each sampled byte is fed back.
    Call it with the network in eval mode.

    Args:
        network: a network with ``init_state`` and ``step``.
        prompt: the bytes to continue, at least one per row.
        max_new_bytes: how many bytes to sample.
        temperature: softmax temperature; 0 picks the likeliest byte (greedy).
        top_k: sample only among the ``top_k`` likeliest bytes (None: all).
        generator: random number generator of the sampling (None: the global one).
    """
    if prompt.shape[1] < 1:
        raise ValueError("the prompt must hold at least one byte per row")
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    if top_k is not None and top_k < 1:
        raise ValueError(f"top_k must be >= 1, got {top_k}")
    length = prompt.shape[1]
    out = torch.cat([prompt, prompt.new_zeros(prompt.shape[0], max_new_bytes)], 1)
    state = network.init_state(prompt.shape[0], device=prompt.device)
    # Step t reads byte t and predicts byte t + 1; predictions inside the prompt are discarded.
    for t in range(length + max_new_bytes - 1):
        logits, state = network.step(out[:, t], state)
        if t + 1 >= length:
            out[:, t + 1] = sample(logits, temperature, top_k, generator)
    return out
