"""The block KV cache of Fast-dLLM (Wu et al. 2025, §3.2) for the masked-diffusion transformer (docs/design.md §4).

A masked-diffusion model attends bidirectionally, so no key or value is ever final: committing a token changes the
keys and values of every position. Block-wise decoding makes them change little outside the block being decoded,
which is what the cache exploits:

    at the first step of a block   full forward over all T positions; every layer's keys (after RoPE) and values
                                   are stored — the cache is *refreshed*
    at the block's other steps     forward only a span [start, start + W) of the sequence; its queries attend to
                                   the span's fresh keys/values and to the stored ones everywhere else

The sampler picks the span: ``prefix`` cache = from the block's start to the end (the prompt and finished blocks
are reused), ``dual`` cache = the block alone (the masked suffix is reused too). Shapes: keys and values are
(B, n_kv_heads, T, head_dim) per layer, before the grouped-query repeat.
"""

from __future__ import annotations

import torch


class BlockKVCache:
    """Keys and values of every layer from the last full forward; ``update`` is called by each attention layer."""

    def __init__(self):
        self.keys: list[torch.Tensor] = []
        self.values: list[torch.Tensor] = []

    @property
    def length(self) -> int:
        """T: the sequence length the cache covers (0 when empty)."""
        return self.keys[0].shape[2] if self.keys else 0

    def clear(self) -> None:
        """Forget every layer; the next full forward refills the cache (a refresh)."""
        self.keys.clear()
        self.values.clear()

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor, span_start: int | None):
        """Store (full forward, ``span_start`` None) or merge (span forward) one layer's keys and values.

        Full: k, v cover all T positions and are appended (the model clears the cache first). Span: k, v cover positions
        [span_start, span_start + W) and are returned spliced between the stored ones — the cache itself is not
        changed, since the span is recomputed at every step until the next refresh.
        """
        if span_start is None:
            if layer != len(self.keys):
                raise ValueError(f"layer {layer} stored out of order ({len(self.keys)} layers cached)")
            self.keys.append(k)
            self.values.append(v)
            return k, v
        stop = span_start + k.shape[2]
        if layer >= len(self.keys) or stop > self.length:
            raise ValueError(f"span [{span_start}, {stop}) of layer {layer} is outside the cache "
                             f"({len(self.keys)} layers, length {self.length}); run a full forward first")
        return self._splice(self.keys[layer], k, span_start), self._splice(self.values[layer], v, span_start)

    @staticmethod
    def _splice(cached: torch.Tensor, fresh: torch.Tensor, start: int) -> torch.Tensor:
        """cached (B, h, T, hd) with positions [start, start + W) replaced by fresh (B, h, W, hd)."""
        stop = start + fresh.shape[2]
        return torch.cat([cached[:, :, :start], fresh, cached[:, :, stop:]], dim=2)

    def keep_rows(self, index: torch.Tensor) -> None:
        """Keep only the batch rows ``index`` (n,) of every layer, in that order: rows the sampler stops forwarding
        (finished answers or blocks) leave the cache with it, so span forwards of the other rows still line up."""
        self.keys = [k.index_select(0, index) for k in self.keys]
        self.values = [v.index_select(0, index) for v in self.values]
