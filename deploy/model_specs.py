"""The models this tool knows how to serve, as data with sources.

Each row is read from the model's published `config.json` on the Hugging Face hub (the same
files are kept in tests/data/models/) and its model card. The checkpoint
size is the sum of the tensors in the `*.safetensors` files of the `main` branch (the
`metadata.total_size` of `model.safetensors.index.json`), which is what is downloaded and what
the disk check must find room for; the files themselves add a few kB of JSON header each.

Besides the raw numbers, this module derives what the VRAM planner needs: the bytes of each
part of the checkpoint (embeddings, attention, router, MXFP4 experts) and the bytes each
tensor-parallel rank holds once vLLM has loaded them in the layout of a given MoE kernel.
"""

from __future__ import annotations

from dataclasses import dataclass

GIB = 1024**3

# MXFP4 (OCP Microscaling FP4, the format of the checkpoint's MoE weights): blocks of 32 FP4
# (E2M1) values, 4 bits each, sharing one 8-bit (E8M0) scale. The checkpoint stores each
# expert matrix as `*_blocks` (uint8, two values per byte) and `*_scales` (uint8, one per
# block). Source: config.json `quantization_config.quant_method = "mxfp4"` and the tensor
# names/shapes in model.safetensors.index.json (e.g. mlp.experts.gate_up_proj_blocks
# [E, 2*I, H/32, 16] uint8, gate_up_proj_scales [E, 2*I, H/32] uint8).
MXFP4_BLOCK = 32
MXFP4_BYTES_PER_VALUE = 0.5
MXFP4_SCALE_BYTES_PER_BLOCK = 1
BF16_BYTES = 2


@dataclass(frozen=True)
class ModelSpec:
    """Architecture and size facts of one published model."""

    hub_id: str
    num_hidden_layers: int
    hidden_size: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    sliding_window: int
    # layer_types from config.json: which layers attend over the sliding window
    sliding_layers: int
    full_layers: int
    num_local_experts: int
    experts_per_token: int
    intermediate_size: int
    vocab_size: int
    max_position_embeddings: int
    # bytes of the tensors in the safetensors files (index.json metadata.total_size)
    checkpoint_bytes: int
    # parameter counts from the model card (total, active per token)
    params_total: int
    params_active: int
    source: str

    @property
    def checkpoint_gib(self) -> float:
        return self.checkpoint_bytes / GIB

    # --- the checkpoint, part by part (bytes as stored; all but the experts are bf16) ----

    @property
    def q_size(self) -> int:
        return self.num_attention_heads * self.head_dim

    @property
    def kv_size(self) -> int:
        return self.num_key_value_heads * self.head_dim

    def embedding_bytes(self) -> int:
        """`model.embed_tokens` and the untied `lm_head`, bf16 [vocab, hidden] each."""
        return 2 * self.vocab_size * self.hidden_size * BF16_BYTES

    def attention_params_per_layer(self) -> int:
        """q/k/v/o projections with biases and the 64 attention sinks of one layer."""
        h = self.hidden_size
        qkv = h * (self.q_size + 2 * self.kv_size) + self.q_size + 2 * self.kv_size
        o = self.q_size * h + h
        return qkv + o + self.num_attention_heads

    def router_params_per_layer(self) -> int:
        return self.num_local_experts * self.hidden_size + self.num_local_experts

    def norm_params_per_layer(self) -> int:
        return 2 * self.hidden_size

    def expert_params_per_layer(self) -> int:
        """MXFP4 values of gate_up [E, 2I, H] and down [E, H, I] of one layer."""
        return 3 * self.num_local_experts * self.intermediate_size * self.hidden_size

    def expert_bias_params_per_layer(self) -> int:
        return self.num_local_experts * (2 * self.intermediate_size + self.hidden_size)

    def bf16_bytes(self) -> int:
        """Everything that is not an MXFP4 expert matrix: stays bf16 in every layout."""
        per_layer = (
            self.attention_params_per_layer()
            + self.router_params_per_layer()
            + self.norm_params_per_layer()
            + self.expert_bias_params_per_layer()
        )
        return (
            self.embedding_bytes()
            + (self.num_hidden_layers * per_layer + self.hidden_size) * BF16_BYTES
        )

    def mxfp4_bytes(self) -> int:
        """The expert matrices as stored: 0.5 byte a value + 1 scale byte per 32 values."""
        values = self.num_hidden_layers * self.expert_params_per_layer()
        return int(values * MXFP4_BYTES_PER_VALUE) + values // MXFP4_BLOCK

    def computed_checkpoint_bytes(self) -> int:
        """Tensor bytes from the architecture alone; equals `checkpoint_bytes` exactly."""
        return self.bf16_bytes() + self.mxfp4_bytes()

    def params_computed(self) -> int:
        per_layer = (
            self.attention_params_per_layer()
            + self.router_params_per_layer()
            + self.norm_params_per_layer()
            + self.expert_params_per_layer()
            + self.expert_bias_params_per_layer()
        )
        return (
            self.embedding_bytes() // BF16_BYTES
            + self.num_hidden_layers * per_layer
            + self.hidden_size
        )

    # --- what one tensor-parallel rank holds in vLLM ------------------------------------

    def rank_weight_bytes(
        self,
        tp: int,
        hidden_pad: int = 1,
        intermediate_pad: int = 1,
        expert_scale: float = 1.0,
    ) -> int:
        """Bytes of weights on one of `tp` ranks, the MoE kernel's layout taken into account.

        vLLM shards attention heads, the (vocabulary-parallel) embeddings and lm_head, and the
        experts' intermediate dimension over the ranks; norms and the router are replicated;
        KV heads are replicated once `tp` exceeds their number. Each MoE kernel rounds the
        per-rank intermediate size and the hidden size up to its tile
        (`mxfp4_round_up_hidden_size_and_intermediate_size` in vLLM's MXFP4 code), and the
        padded expert matrices are what is allocated. `expert_scale` carries what a kernel's
        layout adds beyond that padding (see vram_tables.py's WEIGHT_LAYOUTS: fitted to real loads).
        """
        h = self.hidden_size
        i_rank = _round_up(-(-self.intermediate_size // tp), intermediate_pad)
        h_pad = _round_up(h, hidden_pad)
        e = self.num_local_experts
        values = self.num_hidden_layers * 3 * e * i_rank * h_pad
        mx = values * MXFP4_BYTES_PER_VALUE + values / MXFP4_BLOCK
        bias = self.num_hidden_layers * e * (2 * i_rank + h_pad)
        return int(self.rank_dense_bytes(tp) + bias * BF16_BYTES + mx * expert_scale)

    def rank_dense_bytes(self, tp: int) -> int:
        """bf16 bytes of one rank's non-expert tensors: attention (heads split, KV heads
        replicated beyond their number), vocabulary-parallel embeddings and lm_head (vocab
        padded to 64 per rank), router and norms (replicated)."""
        h = self.hidden_size
        heads = self.num_attention_heads // tp
        kv_heads = max(1, self.num_key_value_heads // tp)
        q, kv = heads * self.head_dim, kv_heads * self.head_dim
        attn = h * (q + 2 * kv) + q + 2 * kv + q * h + h + heads
        vocab = -(-self.vocab_size // (64 * tp)) * 64  # vocab padded to 64 per rank
        bf16 = (
            2 * vocab * h
            + self.num_hidden_layers
            * (attn + self.router_params_per_layer() + self.norm_params_per_layer())
            + h
        )
        return bf16 * BF16_BYTES

    def kv_bytes_per_token_per_layer(self, tp: int, dtype_bytes: int) -> int:
        """K and V of one token in one layer on one rank."""
        kv_heads = max(1, self.num_key_value_heads // tp)
        return 2 * kv_heads * self.head_dim * dtype_bytes


def _round_up(x: int, multiple: int) -> int:
    return -(-x // multiple) * multiple


# Source: huggingface.co/openai/gpt-oss-20b/blob/main/config.json (copy in
# tests/data/models/gpt-oss-20b/config.json): layer_types alternates
# sliding_attention / full_attention, 12 of each. checkpoint_bytes: the repository's
# model.safetensors.index.json "metadata": {"total_size": 13761264768} (seen in two public
# copies of that file found with the search tool; the HF file list shows the shards as
# 4.79 + 4.80 + 4.17 GB), and `computed_checkpoint_bytes()` gives exactly 13,761,264,768 from
# the architecture (sinks in bf16). Parameter counts: model card (21B total, 3.6B active);
# `params_computed()` = 20,914,757,184, the figure Keras' gpt_oss_20b_en preset also gives.
GPT_OSS_20B = ModelSpec(
    hub_id="openai/gpt-oss-20b",
    num_hidden_layers=24,
    hidden_size=2880,
    num_attention_heads=64,
    num_key_value_heads=8,
    head_dim=64,
    sliding_window=128,
    sliding_layers=12,
    full_layers=12,
    num_local_experts=32,
    experts_per_token=4,
    intermediate_size=2880,
    vocab_size=201088,
    max_position_embeddings=131072,
    checkpoint_bytes=13_761_264_768,
    params_total=20_914_757_184,
    params_active=3_600_000_000,
    source="openai/gpt-oss-20b config.json, model.safetensors.index.json total_size, model card",
)

# Source: huggingface.co/openai/gpt-oss-120b/blob/main/config.json (copy in
# tests/data/models/gpt-oss-120b/config.json): 36 layers, 18 sliding and 18
# full. checkpoint_bytes: NOT read from the 120b index.json (no copy was found with the search
# tool); it is `computed_checkpoint_bytes()` from the architecture, the method that reproduces
# the 20b index.json total to the byte; the HF file list shows 15 shards, 65.2 GB in all,
# which agrees. Parameter counts: model card (117B total, 5.1B active); params_computed()
# gives 116,829,156,672.
GPT_OSS_120B = ModelSpec(
    hub_id="openai/gpt-oss-120b",
    num_hidden_layers=36,
    hidden_size=2880,
    num_attention_heads=64,
    num_key_value_heads=8,
    head_dim=64,
    sliding_window=128,
    sliding_layers=18,
    full_layers=18,
    num_local_experts=128,
    experts_per_token=4,
    intermediate_size=2880,
    vocab_size=201088,
    max_position_embeddings=131072,
    checkpoint_bytes=65_248_815_744,
    params_total=116_829_156_672,
    params_active=5_100_000_000,
    source="openai/gpt-oss-120b config.json, size computed from the architecture, model card",
)

MODELS: dict[str, ModelSpec] = {m.hub_id: m for m in (GPT_OSS_20B, GPT_OSS_120B)}

# The hub commit each model is downloaded at, so every host of a fleet serves the same weights.
# The hub is not reachable from where this was written: each commit is the name of the snapshot
# folder huggingface_hub makes for it (``hub/models--openai--<name>/snapshots/<commit>``), as it
# appears in several unrelated public repositories (found with code search, 2026-12):
# - gpt-oss-20b 6cee5e81ee83917806bbde320786a8fb61efebee: five or more projects, e.g. one that pins
#   it as ``CACHEBLEND_MODEL_REVISION`` beside the snapshot path, and Rust/candle and MLX examples.
# - gpt-oss-120b b5c939de8f754692c1647ca79fbf85e8c1e70f8a: four projects (a vLLM smoke test on Hopper,
#   a tt-metal bring-up, a GB10 vLLM note, an offload experiment); older snapshots seen less often
#   (eabf0c51..., dc61ed29..., bc75b44b...) are earlier commits of the same repository.
# Override per host with the ``model_revision`` setting; docs/hardening.md says how to check one.
HUB_REVISIONS: dict[str, str] = {
    "openai/gpt-oss-20b": "6cee5e81ee83917806bbde320786a8fb61efebee",
    "openai/gpt-oss-120b": "b5c939de8f754692c1647ca79fbf85e8c1e70f8a",
}
