//! Causal self-attention with grouped-query heads, RoPE and an optional KV
//! cache, on moe-tensor's fused `causal_attention` (no `T×S` probabilities kept
//! for backward), also when decoding after a cache.

use super::linear;
use super::rope::Rope;
use moe_tensor::{Result, Tensor};

/// Keys and values of the positions seen so far, `[B, G, S, K]` each.
#[derive(Clone, Debug, Default)]
pub struct LayerKvCache {
    /// Cached keys (after RoPE).
    pub k: Option<Tensor>,
    /// Cached values.
    pub v: Option<Tensor>,
}

impl LayerKvCache {
    /// Number of cached positions.
    pub fn len(&self) -> usize {
        self.k.as_ref().map_or(0, |k| k.dims()[2])
    }

    /// Whether nothing is cached yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Multi-head attention whose H query heads share G key/value heads in groups.
#[derive(Clone, Debug)]
pub struct Attention {
    /// `[H·K, D]`.
    pub q_proj: Tensor,
    /// `[G·K, D]`.
    pub k_proj: Tensor,
    /// `[G·K, D]`.
    pub v_proj: Tensor,
    /// `[D, H·K]`.
    pub o_proj: Tensor,
    /// Optional q/k/v biases (Qwen2): `[H·K]`, `[G·K]`, `[G·K]`.
    pub qkv_bias: Option<[Tensor; 3]>,
    /// H.
    pub num_heads: usize,
    /// G.
    pub num_kv_heads: usize,
    /// K.
    pub head_dim: usize,
}

impl Attention {
    /// `x [B, T, D]` at positions `start..start + T` → `[B, T, D]`. With a
    /// cache, its keys/values are attended to and this call's are appended.
    pub fn forward(&self, x: &Tensor, rope: &Rope, start: usize, cache: Option<&mut LayerKvCache>) -> Result<Tensor> {
        let (b, t) = (x.dims()[0], x.dims()[1]);
        let (h, g, k) = (self.num_heads, self.num_kv_heads, self.head_dim);
        let bias = |i: usize| self.qkv_bias.as_ref().map(|bs| &bs[i]);
        // [B, T, n·K] → [B, n, T, K]
        let heads = |y: Tensor, n: usize| y.reshape((b, t, n, k))?.transpose(1, 2);
        let q = heads(linear(x, &self.q_proj, bias(0))?, h)?;
        let kk = heads(linear(x, &self.k_proj, bias(1))?, g)?;
        let v = heads(linear(x, &self.v_proj, bias(2))?, g)?;
        let q = rope.apply(&q, start)?;
        let mut kk = rope.apply(&kk, start)?;
        let mut v = v.contiguous()?;
        if let Some(c) = cache {
            if let (Some(pk), Some(pv)) = (&c.k, &c.v) {
                kk = Tensor::cat(&[pk, &kk], 2)?;
                v = Tensor::cat(&[pv, &v], 2)?;
            }
            c.k = Some(kk.clone());
            c.v = Some(v.clone());
        }
        // Fused causal GQA attention: query head h reads kv head h / (H/G)
        // (transformers' repeat_kv order); query i sees keys ..= S − T + i.
        let out = q.causal_attention(&kk, &v, Some(1.0 / (k as f64).sqrt()))?; // [B, H, T, K]
        let out = out.transpose(1, 2)?.reshape((b, t, h * k))?;
        linear(&out, &self.o_proj, None)
    }
}
