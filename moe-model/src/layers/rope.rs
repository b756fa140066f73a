//! Rotary position embeddings in HF's `rotate_half` layout: the head is split
//! into halves `(x1, x2)` and rotated as `x·cos + (−x2, x1)·sin`, with
//! frequency `i` on both dims `i` and `i + K/2`. The rotation itself is
//! moe-tensor's fused `rope` op (one pass forward, the inverse rotation
//! backward); this type owns tables with transformers' angle rounding.

use moe_tensor::{DType, Device, Error, Result, Rope as Tables, Tensor};
use std::borrow::Cow;

/// Precomputed cos/sin tables `[P, K/2]` for positions `0..P`.
#[derive(Clone, Debug)]
pub struct Rope {
    /// f32 tables on the CPU, the model's usual dtype and device.
    tables: Tables,
    head_dim: usize,
    max_pos: usize,
}

impl Rope {
    /// Tables for `max_pos` positions. Frequencies and angles are computed in
    /// f32 exactly as transformers' default RoPE does, so logits match it.
    pub fn new(head_dim: usize, theta: f64, max_pos: usize) -> Result<Self> {
        let half = head_dim / 2;
        let inv_freq: Vec<f32> = (0..half)
            .map(|i| 1.0 / (theta as f32).powf((2 * i) as f32 / head_dim as f32))
            .collect();
        let mut cos = Vec::with_capacity(max_pos * half);
        let mut sin = Vec::with_capacity(max_pos * half);
        for p in 0..max_pos {
            for f in &inv_freq {
                let a = p as f32 * f;
                cos.push(a.cos());
                sin.push(a.sin());
            }
        }
        let dev = Device::Cpu;
        let tables = Tables::from_tables(
            Tensor::from_vec(cos, (max_pos, half), &dev)?,
            Tensor::from_vec(sin, (max_pos, half), &dev)?,
            theta,
        )?;
        Ok(Rope {
            tables,
            head_dim,
            max_pos,
        })
    }

    /// Positions the tables cover.
    pub fn max_positions(&self) -> usize {
        self.max_pos
    }

    /// The tables in `dtype` on `dev` (the stored ones when they already are).
    fn tables_for(&self, dtype: DType, dev: &Device) -> Result<Cow<'_, Tables>> {
        let (cos, sin) = (self.tables.cos(), self.tables.sin());
        if cos.dtype() == dtype && &cos.device() == dev {
            return Ok(Cow::Borrowed(&self.tables));
        }
        let conv = |t: &Tensor| Tensor::from_vec(t.to_vec::<f32>()?, t.dims().to_vec(), dev)?.to_dtype(dtype);
        Ok(Cow::Owned(Tables::from_tables(
            conv(cos)?,
            conv(sin)?,
            self.tables.theta(),
        )?))
    }

    /// Rotates `x [B, H, T, K]` whose tokens sit at positions `start..start + T`.
    pub fn apply(&self, x: &Tensor, start: usize) -> Result<Tensor> {
        let t = x.dims()[2];
        if start + t > self.max_pos || x.dims()[3] != self.head_dim {
            return Err(Error::InvalidShape {
                op: "rope",
                msg: format!(
                    "positions {start}..{} of head width {} exceed max_position_embeddings = {} or differ from head_dim {}",
                    start + t,
                    x.dims()[3],
                    self.max_pos,
                    self.head_dim
                ),
            });
        }
        x.rope(self.tables_for(x.dtype(), &x.device())?.as_ref(), start)
    }
}
