"""Golden for moe-train's AdamW and gradient clipping: torch.optim.AdamW and
torch.nn.utils.clip_grad_norm_ on small seeded tensors.

Writes moe-train/tests/goldens/adamw.safetensors (read by moe-train/tests/optim.rs):
  init.<p>            parameter values before the first step (f32)
  grad.<t>.<p>        gradient fed at step t (f32)
  lr                  learning rate of each step (f64, one per step)
  param.<t>.<p>       parameter values after step t (f32)
  exp_avg.<p>, exp_avg_sq.<p>   AdamW moments after the last step (f32)
  clip.grad.<p>, clip.out.<p>   gradients before / after clip_grad_norm_ (f32)
  clip.norm           the pre-clip total norm torch returns (f32 scalar)
Hyper-parameters are in __metadata__. Two groups: decayed matrices ("w", "embed_tokens.weight")
and undecayed rank-1 tensors ("norm.weight", "b").
Run: /work/venv/bin/python tools/goldens/optim/gen_adamw.py
"""
import os

import torch
from safetensors.torch import save_file

OUT = os.path.join(os.path.dirname(__file__), "../../../moe-train/tests/goldens/adamw.safetensors")
BETAS, EPS, WD, STEPS, MAX_NORM = (0.9, 0.95), 1e-8, 0.1, 5, 1.0
LRS = [1e-2, 2e-2, 3e-2, 2e-2, 5e-3]

g = torch.Generator().manual_seed(1234)
shapes = {"w": (4, 3), "embed_tokens.weight": (5, 2), "norm.weight": (3,), "b": (4,)}
params = {n: torch.nn.Parameter(torch.randn(s, generator=g) * 1.5) for n, s in shapes.items()}
decay = ["w", "embed_tokens.weight"]
no_decay = ["norm.weight", "b"]
opt = torch.optim.AdamW(
    [
        {"params": [params[n] for n in decay], "weight_decay": WD},
        {"params": [params[n] for n in no_decay], "weight_decay": 0.0},
    ],
    lr=LRS[0], betas=BETAS, eps=EPS, foreach=False,
)
out = {f"init.{n}": p.detach().clone() for n, p in params.items()}
for t in range(STEPS):
    for group in opt.param_groups:
        group["lr"] = LRS[t]
    for n, p in params.items():
        # Mixed magnitudes so that eps and bias correction both matter.
        p.grad = torch.randn(p.shape, generator=g) * (10.0 ** (t % 3 - 1))
        out[f"grad.{t}.{n}"] = p.grad.clone()
    opt.step()
    for n, p in params.items():
        out[f"param.{t}.{n}"] = p.detach().clone()
for n, p in params.items():
    out[f"exp_avg.{n}"] = opt.state[p]["exp_avg"].clone()
    out[f"exp_avg_sq.{n}"] = opt.state[p]["exp_avg_sq"].clone()
out["lr"] = torch.tensor(LRS, dtype=torch.float64)

for n, p in params.items():
    p.grad = torch.randn(p.shape, generator=g)
    out[f"clip.grad.{n}"] = p.grad.clone()
norm = torch.nn.utils.clip_grad_norm_(list(params.values()), MAX_NORM)
for n, p in params.items():
    out[f"clip.out.{n}"] = p.grad.clone()
out["clip.norm"] = norm.detach().reshape(())

meta = {
    "beta1": str(BETAS[0]), "beta2": str(BETAS[1]), "eps": str(EPS), "weight_decay": str(WD),
    "steps": str(STEPS), "max_norm": str(MAX_NORM), "torch": torch.__version__,
}
os.makedirs(os.path.dirname(OUT), exist_ok=True)
save_file({k: v.contiguous() for k, v in out.items()}, OUT, metadata=meta)
print("wrote", os.path.normpath(OUT), "clip norm", float(norm))
