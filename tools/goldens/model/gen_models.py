"""Tiny random transformers models and their forward/backward/generate results,
the references for moe-model/tests/hf_goldens.rs.

For each model NAME this writes moe-model/tests/goldens/NAME/:
  config.json, model.safetensors   save_pretrained() output (HF's on-disk layout)
  golden.safetensors               input_ids [B, T] (I64); logits [B, T, V];
                                   loss (CE, + router_aux_loss_coef * aux for MoE);
                                   aux_loss (MoE); grad.<param> for every parameter
                                   under its in-memory (named_parameters) name;
                                   prompt [B, P] and greedy [B, P + G] from generate()

Two traps avoided (see the project conventions): no pad_token_id (a padding row
gets no gradient), and parameters drawn with a larger std than HF's 0.02 so logits
and router scores are far from uniform; seeds are searched until every top-k
choice and every greedy token wins by a clear margin.

Run: venv/bin/python tools/goldens/model/gen_models.py  (CPU, float32)
"""

import json
import os
import sys

import torch
from safetensors.torch import save_file
from transformers import (LlamaConfig, LlamaForCausalLM, MixtralConfig,
                          MixtralForCausalLM, Qwen2MoeConfig,
                          Qwen2MoeForCausalLM)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
OUT = os.path.join(ROOT, "moe-model", "tests", "goldens")
B, T, P, G = 2, 12, 5, 6  # batch, sequence, prompt length, generated tokens
MARGIN = 2e-3  # minimum gap between the last chosen and the first unchosen score

COMMON = dict(vocab_size=96, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
              num_key_value_heads=2, max_position_embeddings=64, rms_norm_eps=1e-6,
              pad_token_id=None, bos_token_id=None, eos_token_id=None,
              rope_parameters={"rope_type": "default", "rope_theta": 10000.0})


def models():
    yield "llama_gqa", LlamaForCausalLM, LlamaConfig(**COMMON, intermediate_size=48, tie_word_embeddings=False)
    yield "llama_tied", LlamaForCausalLM, LlamaConfig(**{**COMMON, "num_key_value_heads": 1}, intermediate_size=48,
                                                      tie_word_embeddings=True)
    for k in (1, 2):
        yield f"mixtral_top{k}", MixtralForCausalLM, MixtralConfig(
            **COMMON, intermediate_size=40, num_local_experts=4, num_experts_per_tok=k,
            router_aux_loss_coef=0.02, tie_word_embeddings=False)
    yield "qwen2_moe", Qwen2MoeForCausalLM, Qwen2MoeConfig(
        **COMMON, intermediate_size=48, moe_intermediate_size=16, shared_expert_intermediate_size=24,
        num_experts=8, num_experts_per_tok=2, norm_topk_prob=False, router_aux_loss_coef=0.02,
        qkv_bias=True, tie_word_embeddings=False)


def init_(model, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=g))
            elif name.endswith(".gate.weight"):  # routers: decisive top-k
                p.copy_(0.6 * torch.randn(p.shape, generator=g))
            elif name.endswith("bias"):
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(0.15 * torch.randn(p.shape, generator=g))


def margin(scores, k):
    top = torch.topk(scores.float(), k + 1, dim=-1).values
    return (top[..., k - 1] - top[..., k]).min().item()


def run(name, cls, cfg):
    for seed in range(100):
        torch.manual_seed(seed)
        model = cls(cfg).float().eval()
        init_(model, 1000 + seed)
        ids = torch.randint(0, cfg.vocab_size, (B, T), generator=torch.Generator().manual_seed(seed))
        moe = hasattr(cfg, "router_aux_loss_coef")
        kw = dict(output_router_logits=True) if moe else {}
        out = model(input_ids=ids, labels=ids, **kw)
        ok = True
        if moe:
            k = cfg.num_experts_per_tok
            ok = all(margin(torch.softmax(l.float(), -1), k) > MARGIN for l in out.router_logits)
        prompt = ids[:, :P]
        gen = model.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=G, do_sample=False, output_logits=True,
                             return_dict_in_generate=True, pad_token_id=0)
        ok = ok and all(margin(l, 1) > MARGIN for l in gen.logits)
        # Every routing decision along the generated sequence must be clear too.
        if moe and ok:
            full = model(input_ids=gen.sequences, output_router_logits=True)
            ok = all(margin(torch.softmax(l.float(), -1), k) > MARGIN for l in full.router_logits)
        if ok:
            break
    else:
        sys.exit(f"{name}: no seed with clear margins")
    model.zero_grad()
    out = model(input_ids=ids, labels=ids, **kw)
    out.loss.backward()
    d = os.path.join(OUT, name)
    model.save_pretrained(d)
    t = {"input_ids": ids, "logits": out.logits.detach().contiguous(), "loss": out.loss.detach().reshape(()),
         "prompt": prompt, "greedy": gen.sequences}
    if moe:
        t["aux_loss"] = out.aux_loss.detach().reshape(())
    for pname, p in model.named_parameters():
        t["grad." + pname] = p.grad.detach().contiguous()
    t = {k: v.detach().contiguous().clone() for k, v in t.items()}
    save_file(t, os.path.join(d, "golden.safetensors"), metadata={"seed": str(seed)})
    sizes = sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d))
    print(f"{name}: seed {seed}, loss {out.loss.item():.6f}, {sizes / 1024:.0f} KiB")


if __name__ == "__main__":
    torch.set_num_threads(1)
    only = sys.argv[1:]
    for name, cls, cfg in models():
        if not only or name in only:
            run(name, cls, cfg)
