//! Causal self-attention with grouped-query heads, RoPE and an optional KV cache.

use super::linear;
use super::rope::Rope;
use moe_tensor::{Device, Result, Tensor};

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

/// U8 `[T, S]` mask, 1 where key `s` lies after query `t` (queries sit at
/// positions `S − T .. S`).
fn causal_mask(t: usize, s: usize, dev: &Device) -> Result<Tensor> {
    let past = s - t;
    let m: Vec<u8> = (0..t)
        .flat_map(|q| (0..s).map(move |k| u8::from(k > past + q)))
        .collect();
    Tensor::from_vec(m, (t, s), dev)
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
        let s = kk.dims()[2];
        let rep = h / g;
        // Query heads of one group attend to that group's key head:
        // [B, H, T, K] = [B, G, rep·T, K] (repeat_kv order: head = g·rep + j).
        let q_g = q.reshape((b, g, rep * t, k))?;
        let scores = q_g.matmul(&kk.transpose(2, 3)?)?.mul_scalar(1.0 / (k as f64).sqrt())?;
        let scores = scores.reshape(vec![b, g, rep, t, s])?;
        let mask = causal_mask(t, s, &x.device())?;
        let probs = scores.masked_fill(&mask, f64::NEG_INFINITY)?.softmax(-1)?;
        let out = probs.reshape((b, g, rep * t, s))?.matmul(&v)?; // [B, G, rep·T, K]
        let out = out.reshape((b, h, t, k))?.transpose(1, 2)?.reshape((b, t, h * k))?;
        linear(&out, &self.o_proj, None)
    }
}
