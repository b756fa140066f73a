#!/usr/bin/env python3
"""Golden file for moe-router, computed with PyTorch and transformers.

Writes `tools/goldens/router/router.safetensors`, read by
`moe-router/tests/goldens.rs`. Inputs are seeded float32 draws with a large std
(2.0 for logits, 1.0 for router weights) so no top-k choice is near a tie (checked
below). References:

- `hf_aux_*`: transformers' own `load_balancing_loss_func` (Mixtral; Qwen2-MoE's is
  identical) over two layers' logits, with its gradients (float32, as HF computes).
- `megatron_aux`: Megatron-LM's `switch_load_balancing_loss_func` formula, written
  out here in float64.
- `seq_aux`: DeepSeek-V2's sequence-level balance loss (`seq_aux=True` branch of
  its MoEGate), written out here in float64.
- `z_loss`: ST-MoE's router z-loss, `logsumexp(logits)^2` mean, float64.
- `mixtral_*`, `qwen2_*`, `dsv2_*`, `dsv3_*`: the routers of transformers'
  `MixtralTopKRouter`, `Qwen2MoeTopKRouter` (norm_topk_prob False),
  `DeepseekV2TopkRouter` (greedy, routed_scaling_factor 2.5) and
  `DeepseekV3TopkRouter` (n_group 1, e_score_correction_bias set, scaling 2.5)
  on the same hidden states and router weight: combine weights and expert ids.
- `sinkhorn_*`: Megatron-LM's `sinkhorn` (moe_utils.py) in float32, tolerance 1e-4,
  and its top-k choices.

Usage: venv/bin/python tools/goldens/router/gen_router.py
"""

import json
import os
import struct

import safetensors
import torch
import torch.nn.functional as F
import transformers
from safetensors.torch import load_file
from transformers.models.deepseek_v2.configuration_deepseek_v2 import DeepseekV2Config
from transformers.models.deepseek_v2.modeling_deepseek_v2 import DeepseekV2TopkRouter
from transformers.models.deepseek_v3.configuration_deepseek_v3 import DeepseekV3Config
from transformers.models.deepseek_v3.modeling_deepseek_v3 import DeepseekV3TopkRouter
from transformers.models.mixtral.configuration_mixtral import MixtralConfig
from transformers.models.mixtral.modeling_mixtral import MixtralTopKRouter, load_balancing_loss_func
from transformers.models.qwen2_moe.configuration_qwen2_moe import Qwen2MoeConfig
from transformers.models.qwen2_moe.modeling_qwen2_moe import Qwen2MoeTopKRouter

SEED = 20250305
N, E, K, D, SEQ = 24, 8, 2, 16, 6
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "router.safetensors")


def min_topk_margin(scores, k):
    """Smallest gap between the k-th and (k+1)-th score over rows (ties would make goldens flaky)."""
    s = scores.sort(dim=-1, descending=True).values
    return (s[:, k - 1] - s[:, k]).min().item()


def megatron_sinkhorn(cost, tol=1e-4):
    """Megatron-LM megatron/core/transformer/moe/moe_utils.py::sinkhorn, verbatim logic."""
    cost = torch.exp(cost)
    d0 = torch.ones(cost.size(0), device=cost.device, dtype=cost.dtype)
    d1 = torch.ones(cost.size(1), device=cost.device, dtype=cost.dtype)
    eps = 0.00000001
    error = 1e9
    d1_old = d1
    while error > tol:
        d0 = (1 / d0.size(0)) * 1 / (torch.sum(d1 * cost, 1) + eps)
        d1 = (1 / d1.size(0)) * 1 / (torch.sum(d0.unsqueeze(1) * cost, 0) + eps)
        error = torch.mean(torch.abs(d1_old - d1))
        d1_old = d1
    return d1 * cost * d0.unsqueeze(1)


DTYPES = {torch.float32: "F32", torch.float64: "F64", torch.int64: "I64"}


def write_safetensors(path, tensors, metadata):
    """safetensors with sorted metadata and tensors in name order, so regenerating
    gives a byte-identical file (safetensors' own writer orders metadata by hash)."""
    header, blobs, offset = {"__metadata__": dict(sorted(metadata.items()))}, [], 0
    for name in sorted(tensors):
        t = tensors[name].contiguous()
        data = t.numpy().tobytes()
        header[name] = {"dtype": DTYPES[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    head = json.dumps(header, separators=(",", ":")).encode()
    head += b" " * (-len(head) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(head)) + head + b"".join(blobs))


def main():
    g = torch.Generator().manual_seed(SEED)
    out = {}
    logits = [torch.randn(N, E, generator=g) * 2.0 for _ in range(2)]
    for i, l in enumerate(logits):
        assert min_topk_margin(F.softmax(l, -1), K) > 1e-4
        out[f"logits_l{i}"] = l.clone()

    # HF's model-level aux loss over two layers, K = 2 and K = 1, with gradients.
    for k in (1, 2):
        ls = [l.clone().requires_grad_(True) for l in logits]
        loss = load_balancing_loss_func(tuple(ls), num_experts=E, top_k=k)
        loss.backward()
        out[f"hf_aux_k{k}"] = loss.detach().reshape(1)
        for i, l in enumerate(ls):
            out[f"hf_aux_k{k}_grad_l{i}"] = l.grad.clone()

    # Megatron-LM switch_load_balancing_loss_func on layer 0, float64.
    l0 = logits[0].double().requires_grad_(True)
    probs = F.softmax(l0, -1)
    idx = torch.topk(probs, K, dim=-1).indices
    tokens_per_expert = torch.bincount(idx.reshape(-1), minlength=E).double()
    aux = torch.sum(probs.sum(0) * tokens_per_expert) * (E / (N * N * K))
    aux.backward()
    out["megatron_aux"] = aux.detach().reshape(1)
    out["megatron_aux_grad"] = l0.grad.clone()

    # DeepSeek-V2 MoEGate seq_aux branch (bsz = N / SEQ sequences), float64.
    l0 = logits[0].double().requires_grad_(True)
    scores = F.softmax(l0, -1)
    topk_idx = torch.topk(scores, K, dim=-1).indices
    bsz = N // SEQ
    scores_for_seq_aux = scores.view(bsz, SEQ, -1)
    ce = torch.zeros(bsz, E, dtype=torch.float64)
    ce.scatter_add_(1, topk_idx.view(bsz, -1), torch.ones(bsz, SEQ * K, dtype=torch.float64)).div_(SEQ * K / E)
    seq_aux = (ce * scores_for_seq_aux.mean(dim=1)).sum(dim=1).mean()
    seq_aux.backward()
    out["seq_aux"] = seq_aux.detach().reshape(1)
    out["seq_aux_grad"] = l0.grad.clone()

    # Router z-loss, float64.
    l0 = logits[0].double().requires_grad_(True)
    z = torch.logsumexp(l0, dim=-1).square().mean()
    z.backward()
    out["z_loss"] = z.detach().reshape(1)
    out["z_loss_grad"] = l0.grad.clone()

    # transformers' router modules on the same hidden states and weight.
    x = torch.randn(N, D, generator=g)
    w = torch.randn(E, D, generator=g)
    bias = torch.randn(E, generator=g) * 0.3
    out["router_x"], out["router_w"], out["dsv3_bias"] = x, w, bias
    routers = {
        "mixtral": MixtralTopKRouter(MixtralConfig(hidden_size=D, num_attention_heads=4, num_key_value_heads=4, num_local_experts=E, num_experts_per_tok=K)),
        "qwen2": Qwen2MoeTopKRouter(
            Qwen2MoeConfig(hidden_size=D, num_attention_heads=4, num_key_value_heads=4, num_experts=E, num_experts_per_tok=K, norm_topk_prob=False)
        ),
        "dsv2": DeepseekV2TopkRouter(
            DeepseekV2Config(
                hidden_size=D, num_attention_heads=4, num_key_value_heads=4, n_routed_experts=E, num_experts_per_tok=K, topk_method="greedy",
                routed_scaling_factor=2.5,
            )
        ),
        "dsv3": DeepseekV3TopkRouter(
            DeepseekV3Config(
                hidden_size=D, num_attention_heads=4, num_key_value_heads=4, n_routed_experts=E, num_experts_per_tok=K, n_group=1, topk_group=1,
                routed_scaling_factor=2.5, norm_topk_prob=True,
            )
        ),
    }
    with torch.no_grad():
        for name, r in routers.items():
            r.weight.copy_(w)
            if name == "dsv3":
                r.e_score_correction_bias.copy_(bias)
            _, weights, ids = r(x)
            # Sort each token's k choices by id: HF's sorted=False order is unspecified.
            order = ids.argsort(dim=-1)
            out[f"{name}_ids"] = ids.gather(1, order).to(torch.int64)
            out[f"{name}_weights"] = weights.gather(1, order).float()
        logits_x = x @ w.t()
        assert min_topk_margin(F.softmax(logits_x, -1), K) > 1e-4
        assert min_topk_margin(torch.sigmoid(logits_x) + bias, K) > 1e-4

    # Megatron-LM Sinkhorn on layer 0's logits, float32.
    with torch.no_grad():
        bal = megatron_sinkhorn(logits[0].clone())
        out["sinkhorn_balanced"] = bal
        for k in (1, 2):
            assert min_topk_margin(bal, k) > 1e-6
            out[f"sinkhorn_ids_k{k}"] = torch.topk(bal, k, dim=-1).indices.sort(dim=-1).values

    meta = {
        "generator": "tools/goldens/router/gen_router.py",
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "safetensors": safetensors.__version__,
        "N": str(N), "E": str(E), "K": str(K), "D": str(D), "seq_len": str(SEQ),
    }
    out = {k: v.contiguous() for k, v in sorted(out.items())}
    write_safetensors(OUT, out, meta)
    back = load_file(OUT)
    assert all(torch.equal(back[k], v) for k, v in out.items())
    print(f"wrote {OUT} ({os.path.getsize(OUT)} bytes, {len(out)} tensors)")


if __name__ == "__main__":
    main()
