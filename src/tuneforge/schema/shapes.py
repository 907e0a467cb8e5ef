"""Transformer shapes: the dimensions the memory estimate needs, and the public configs of the models the recipes
name. On the ground floor so that both the estimate (plan) and the random-init model builder (models) read them."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Shape:
    """The transformer dimensions the estimate needs."""

    hidden: int
    layers: int
    heads: int
    kv_heads: int
    ffn: int
    vocab: int
    tied_embeddings: bool = False
    attention_head_dim: int = 0  # when it is not hidden / heads (Gemma 3: 256 with hidden 640 and 4 heads)

    @property
    def head_dim(self) -> int:
        return self.attention_head_dim or self.hidden // self.heads

    def linear_shapes(self) -> dict[str, tuple[int, int]]:
        """(in, out) of each per-layer projection, by the module names LoRA targets."""
        h, q, kv = self.hidden, self.heads * self.head_dim, self.kv_heads * self.head_dim
        return {"q_proj": (h, q), "k_proj": (h, kv), "v_proj": (h, kv), "o_proj": (q, h),
                "gate_proj": (h, self.ffn), "up_proj": (h, self.ffn), "down_proj": (self.ffn, h)}

    def largest_layer(self) -> int:
        """Parameters of the largest single module (embedding / lm_head, or an MLP projection)."""
        return max(self.vocab * self.hidden, *(i * o for i, o in self.linear_shapes().values()))

    def num_parameters(self) -> int:
        per_layer = sum(i * o for i, o in self.linear_shapes().values()) + 2 * self.hidden
        embed = self.vocab * self.hidden * (1 if self.tied_embeddings else 2)
        return self.layers * per_layer + embed + self.hidden


# public configs of the models the recipes name (config.json of each checkpoint)
KNOWN_SHAPES: dict[str, Shape] = {
    "meta-llama/Llama-3.1-8B": Shape(4096, 32, 32, 8, 14336, 128256),
    "meta-llama/Llama-3.1-8B-Instruct": Shape(4096, 32, 32, 8, 14336, 128256),
    "meta-llama/Llama-3.2-1B": Shape(2048, 16, 32, 8, 8192, 128256, tied_embeddings=True),
    "HuggingFaceTB/SmolLM2-135M-Instruct": Shape(576, 30, 9, 3, 1536, 49152, tied_embeddings=True),
    "google/gemma-3-270m": Shape(640, 18, 4, 1, 2048, 262144, tied_embeddings=True, attention_head_dim=256),
    "meta-llama/Llama-3.2-3B": Shape(3072, 28, 24, 8, 8192, 128256, tied_embeddings=True),
    "mistralai/Mistral-7B-v0.3": Shape(4096, 32, 32, 8, 14336, 32768),
    "Qwen/Qwen2.5-7B": Shape(3584, 28, 28, 4, 18944, 152064),
    "Qwen/Qwen2.5-7B-Instruct": Shape(3584, 28, 28, 4, 18944, 152064),
}
