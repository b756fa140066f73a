//! Rotary position embeddings in HF's `rotate_half` layout: the head is split
//! into halves `(x1, x2)` and rotated as `x·cos + (−x2, x1)·sin`, with
//! frequency `i` on both dims `i` and `i + K/2`.

use moe_tensor::{DType, Device, Error, Result, Tensor};

/// Precomputed cos/sin tables `[P, K]` for positions `0..P`.
#[derive(Clone, Debug)]
pub struct Rope {
    cos: Vec<f32>,
    sin: Vec<f32>,
    head_dim: usize,
    max_pos: usize,
}

impl Rope {
    /// Tables for `max_pos` positions. Frequencies and angles are computed in
    /// f32 exactly as transformers' default RoPE does, so logits match it.
    pub fn new(head_dim: usize, theta: f64, max_pos: usize) -> Self {
        let half = head_dim / 2;
        let inv_freq: Vec<f32> = (0..half)
            .map(|i| 1.0 / (theta as f32).powf((2 * i) as f32 / head_dim as f32))
            .collect();
        let mut cos = Vec::with_capacity(max_pos * head_dim);
        let mut sin = Vec::with_capacity(max_pos * head_dim);
        for p in 0..max_pos {
            // The same frequencies fill both halves of the head.
            for f in inv_freq.iter().chain(inv_freq.iter()) {
                let a = p as f32 * f;
                cos.push(a.cos());
                sin.push(a.sin());
            }
        }
        Rope {
            cos,
            sin,
            head_dim,
            max_pos,
        }
    }

    /// Positions the tables cover.
    pub fn max_positions(&self) -> usize {
        self.max_pos
    }

    /// cos and sin `[T, K]` for positions `start..start + len`.
    fn tables(&self, start: usize, len: usize, dtype: DType, dev: &Device) -> Result<(Tensor, Tensor)> {
        if start + len > self.max_pos {
            return Err(Error::InvalidShape {
                op: "rope",
                msg: format!(
                    "positions {start}..{} exceed max_position_embeddings = {}",
                    start + len,
                    self.max_pos
                ),
            });
        }
        let k = self.head_dim;
        let r = start * k..(start + len) * k;
        let cos = Tensor::from_vec(self.cos[r.clone()].to_vec(), (len, k), dev)?;
        let sin = Tensor::from_vec(self.sin[r].to_vec(), (len, k), dev)?;
        Ok((cos.to_dtype(dtype)?, sin.to_dtype(dtype)?))
    }

    /// Rotates `x [B, H, T, K]` whose tokens sit at positions `start..start + T`.
    pub fn apply(&self, x: &Tensor, start: usize) -> Result<Tensor> {
        let t = x.dims()[2];
        let (cos, sin) = self.tables(start, t, x.dtype(), &x.device())?;
        let half = self.head_dim / 2;
        let x1 = x.narrow(-1, 0, half)?;
        let x2 = x.narrow(-1, half, half)?;
        let rot = Tensor::cat(&[&x2.neg()?, &x1], -1)?;
        x.mul(&cos)?.add(&rot.mul(&sin)?)
    }
}
