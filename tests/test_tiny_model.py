"""lab.tiny_model makes a small Llama chat model that transformers can run."""

from __future__ import annotations

import hashlib
import json
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from lab.tiny_model import MODEL_FILES, make_tiny_model

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("tiny") / "model"
    assert make_tiny_model(out) == out
    return out


def _digests(folder: Path) -> dict[str, str]:
    return {name: hashlib.sha256((folder / name).read_bytes()).hexdigest() for name in MODEL_FILES}


def test_files_small_and_readable(model_dir: Path) -> None:
    names = {p.name for p in model_dir.iterdir()}
    assert names == set(MODEL_FILES)
    assert sum((model_dir / n).stat().st_size for n in names) < 5 * 1024 * 1024
    for n in names:  # the server may run as another user
        assert stat.S_IMODE((model_dir / n).stat().st_mode) == 0o644


def test_config_numbers(model_dir: Path) -> None:
    config = json.loads((model_dir / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"]
    assert config["model_type"] == "llama"
    assert config["hidden_size"] == 64
    assert config["num_attention_heads"] == 2
    assert config["head_dim"] == 32
    assert config["num_key_value_heads"] == 1
    assert config["num_hidden_layers"] == 2
    assert config["intermediate_size"] == 128
    assert config["max_position_embeddings"] == 2048
    gen = json.loads((model_dir / "generation_config.json").read_text())
    assert gen["eos_token_id"] == config["eos_token_id"]
    assert gen["bos_token_id"] == config["bos_token_id"]
    assert gen["max_new_tokens"] == 32


def test_deterministic(model_dir: Path, tmp_path: Path) -> None:
    again = make_tiny_model(tmp_path / "again")
    assert _digests(again) == _digests(model_dir)
    other_seed = make_tiny_model(tmp_path / "seed7", seed=7)
    digests = _digests(other_seed)
    assert digests["model.safetensors"] != _digests(model_dir)["model.safetensors"]
    assert digests["tokenizer.json"] == _digests(model_dir)["tokenizer.json"]


def test_loads_chats_and_generates(model_dir: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    model.eval()

    config = model.config
    assert type(model).__name__ == "LlamaForCausalLM"
    assert (config.hidden_size, config.num_attention_heads, config.head_dim) == (64, 2, 32)
    assert (config.num_key_value_heads, config.num_hidden_layers) == (1, 2)
    assert config.max_position_embeddings == 2048
    assert config.vocab_size == len(tokenizer)
    assert tokenizer.bos_token == "<|bos|>" and tokenizer.eos_token == "<|eos|>"
    assert tokenizer.bos_token_id == config.bos_token_id
    assert tokenizer.eos_token_id == config.eos_token_id

    messages = [
        {"role": "system", "content": "You are a tiny test model."},
        {"role": "user", "content": "Hello! How are you?"},
    ]
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert text == ("<|bos|><|system|>You are a tiny test model.<|eos|><|user|>Hello! How are you?<|eos|><|assistant|>")
    inputs = tokenizer(text, return_tensors="pt", add_special_tokens=False)
    prompt_len = inputs["input_ids"].shape[1]
    assert inputs["input_ids"][0, 0].item() == tokenizer.bos_token_id
    assert tokenizer.decode(inputs["input_ids"][0]) == text  # byte-level round trip

    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=5, do_sample=False)
        again = model.generate(**inputs, max_new_tokens=5, do_sample=False)
    assert out.shape == (1, prompt_len + 5)
    assert torch.equal(out, again)
    new_ids = out[0, prompt_len:].tolist()
    assert not set(new_ids) & set(tokenizer.all_special_ids)
    reply = tokenizer.decode(new_ids, skip_special_tokens=True)
    assert isinstance(reply, str) and reply
    assert all(" " <= c <= "~" for c in reply), reply


def test_special_tokens_never_likely(model_dir: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    ids = tokenizer("The quick brown fox", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        probs = model(ids).logits[0].softmax(-1)
    special = torch.tensor(tokenizer.all_special_ids)
    assert probs[:, special].max().item() < 1e-6


def test_cli(tmp_path: Path) -> None:
    out = tmp_path / "cli"
    proc = subprocess.run(
        [sys.executable, "-m", "lab.tiny_model", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    report = json.loads(proc.stdout)
    assert report["outdir"] == str(out)
    assert sorted(report["files"]) == sorted(MODEL_FILES)
    assert (out / "model.safetensors").is_file()
