//! Rotary position embeddings in the Hugging Face `rotate_half` convention
//! (transformers' Llama `apply_rotary_pos_emb`): the first half of each head
//! vector pairs with the second half. [`Rope`] holds the cos/sin tables for a
//! range of positions; `x.rope(&rope, offset)` rotates `[.., T, Dh]` at
//! positions `offset..offset + T` and `x.rope_at(&rope, &positions)` at
//! explicit position ids. Backward is the inverse rotation.

use super::fused_util::{check_float, check_like, elems, float_call, plain, Float};
use super::index::{index_values, kernel_err};
use crate::backprop::BackwardOp;
use crate::storage::Storage;
use crate::{DType, Device, Error, Result, Tensor};
use moe_kernels::cpu::rope as kernels;
use moe_kernels::cpu::strided::{offsets, Strided};

const OP: &str = "rope";

/// Cos/sin tables of rotary embeddings for positions `0..max_pos`.
///
/// Angles are `pos · theta^(−2i/Dh)`, computed in f64 and rounded once to the
/// table dtype (transformers computes them in f32, which differs by about
/// `pos · 6e-8` rad).
#[derive(Clone, Debug)]
pub struct Rope {
    head_dim: usize,
    max_pos: usize,
    theta: f64,
    /// `[max_pos, head_dim / 2]` each.
    cos: Tensor,
    sin: Tensor,
}

impl Rope {
    /// Tables for `head_dim` (even, > 0), positions `0..max_pos` and base
    /// `theta` (> 0, e.g. 10 000 for Llama 2, 500 000 for Llama 3), in `dtype`
    /// (f32 or f64, the dtype of the tensors it will rotate) on `device`.
    pub fn new(head_dim: usize, max_pos: usize, theta: f64, dtype: DType, device: &Device) -> Result<Rope> {
        if head_dim == 0 || !head_dim.is_multiple_of(2) {
            return Err(Error::InvalidShape {
                op: "Rope::new",
                msg: format!("head_dim must be even and positive, got {head_dim}"),
            });
        }
        if !(theta.is_finite() && theta > 0.0) {
            return Err(Error::InvalidShape {
                op: "Rope::new",
                msg: format!("theta must be finite and positive, got {theta}"),
            });
        }
        let half = head_dim / 2;
        let mut cos = vec![0.0f64; max_pos * half];
        let mut sin = vec![0.0f64; max_pos * half];
        kernels::rope_tables(&mut cos, &mut sin, max_pos, head_dim, theta).map_err(kernel_err("Rope::new"))?;
        let cos = Tensor::from_vec(cos, (max_pos, half), device)?.to_dtype(dtype)?;
        let sin = Tensor::from_vec(sin, (max_pos, half), device)?.to_dtype(dtype)?;
        check_float("Rope::new", &cos)?;
        Ok(Rope {
            head_dim,
            max_pos,
            theta,
            cos,
            sin,
        })
    }

    /// Rotary tables given directly: `cos` and `sin` `[max_pos, head_dim / 2]`
    /// (f32 or f64, same dtype and device), angle `pos · theta^(−2i/Dh)` at
    /// `[pos, i]`. For angles rounded another way than [`Rope::new`] does,
    /// e.g. transformers' f32 products, so logits match it bit for bit.
    pub fn from_tables(cos: Tensor, sin: Tensor, theta: f64) -> Result<Rope> {
        const CTOR: &str = "Rope::from_tables";
        check_float(CTOR, &cos)?;
        check_like(CTOR, &cos, &sin)?;
        if cos.rank() != 2 || cos.dims() != sin.dims() || cos.dims()[1] == 0 {
            return Err(Error::ShapeMismatch {
                op: CTOR,
                lhs: cos.shape().clone(),
                rhs: sin.shape().clone(),
            });
        }
        let (max_pos, half) = (cos.dims()[0], cos.dims()[1]);
        Ok(Rope {
            head_dim: 2 * half,
            max_pos,
            theta,
            cos: cos.contiguous()?,
            sin: sin.contiguous()?,
        })
    }

    /// Head size Dh the tables are for.
    pub fn head_dim(&self) -> usize {
        self.head_dim
    }
    /// Number of positions covered.
    pub fn max_pos(&self) -> usize {
        self.max_pos
    }
    /// The base of the angles.
    pub fn theta(&self) -> f64 {
        self.theta
    }
    /// `[max_pos, head_dim / 2]` cosines.
    pub fn cos(&self) -> &Tensor {
        &self.cos
    }
    /// `[max_pos, head_dim / 2]` sines.
    pub fn sin(&self) -> &Tensor {
        &self.sin
    }
}

/// Everything forward and backward need besides the data.
struct Plan {
    positions: Vec<i64>,
    /// Rows of `positions` (`[groups, t]`).
    groups: usize,
    outer: usize,
    t: usize,
    dh: usize,
}

struct RopeBackward {
    x: Tensor,
    rope: Rope,
    plan: Plan,
}

impl BackwardOp for RopeBackward {
    fn name(&self) -> &'static str {
        OP
    }
    fn inputs(&self) -> Vec<&Tensor> {
        vec![&self.x]
    }
    fn backward(&self, g: &Tensor) -> Result<Vec<Option<Tensor>>> {
        let g = g.contiguous()?;
        if !g.device().is_cpu() {
            let p = &self.plan;
            let dx = crate::cuda_backend::rope(&g, &p.positions, p.groups, &self.rope.cos, &self.rope.sin, -1.0)?;
            return Ok(vec![Some(Tensor::from_storage(dx, g.shape().clone()))]);
        }
        let dx = float_call!(g.dtype(), OP, inverse(&g, &self.rope, &self.plan))?;
        Ok(vec![Some(dx)])
    }
}

/// Rotates contiguous `x` (the inverse rotation when `inverse`).
fn rotate<T: Float>(x: &Tensor, rope: &Rope, p: &Plan, inverse: bool) -> Result<Vec<T>> {
    let (xs, cs, ss) = (x.read_storage(), rope.cos.read_storage(), rope.sin.read_storage());
    let xv = elems::<T>(&xs, x, OP)?;
    let (cv, sv) = (elems::<T>(&cs, &rope.cos, OP)?, elems::<T>(&ss, &rope.sin, OP)?);
    let f = if inverse {
        kernels::rope_backward::<T>
    } else {
        kernels::rope_forward::<T>
    };
    f(xv, cv, sv, &p.positions, p.outer, p.t, p.dh).map_err(kernel_err(OP))
}

/// The gradient: `g` rotated back.
fn inverse<T: Float>(g: &Tensor, rope: &Rope, p: &Plan) -> Result<Tensor> {
    Ok(plain(rotate::<T>(g, rope, p, true)?, g.shape()))
}

/// The recorded forward on `x`: contiguous, or (on the CPU) a view whose
/// last dim is contiguous, each `Dh` row read where the view puts it. The
/// output is contiguous.
fn forward<T: Float>(x: Tensor, rope: &Rope, plan: Plan) -> Result<Tensor> {
    let y = if x.is_contiguous() {
        rotate::<T>(&x, rope, &plan, false)?
    } else {
        rotate_rows::<T>(&x, rope, &plan)?
    };
    let shape = x.shape().clone();
    let back = RopeBackward {
        x,
        rope: rope.clone(),
        plan,
    };
    Ok(Tensor::from_op(Storage::Cpu(T::into_storage(y)), shape, back))
}

/// Rotates a view whose last dim is contiguous from where its rows are.
fn rotate_rows<T: Float>(x: &Tensor, rope: &Rope, p: &Plan) -> Result<Vec<T>> {
    let (l, rank) = (x.layout(), x.rank());
    let rows = offsets(Strided {
        dims: &x.dims()[..rank - 1],
        strides: &l.strides()[..rank - 1],
        offset: l.offset(),
    });
    let (xs, cs, ss) = (x.read_storage(), rope.cos.read_storage(), rope.sin.read_storage());
    let all = T::slice(xs.cpu(OP)?).ok_or(Error::DTypeMismatch {
        op: OP,
        lhs: T::DTYPE,
        rhs: x.dtype(),
    })?;
    let (cv, sv) = (elems::<T>(&cs, &rope.cos, OP)?, elems::<T>(&ss, &rope.sin, OP)?);
    kernels::rope_forward_rows(all, &rows, cv, sv, &p.positions, p.outer, p.t, p.dh).map_err(kernel_err(OP))
}

impl Tensor {
    /// Rotates `self`, `[.., T, Dh]` (e.g. `[B, H, T, Dh]`), at positions
    /// `offset..offset + T` (`offset` > 0 when decoding after a KV cache).
    pub fn rope(&self, rope: &Rope, offset: usize) -> Result<Tensor> {
        let t = if self.rank() >= 2 {
            self.dims()[self.rank() - 2]
        } else {
            0
        };
        let positions: Vec<i64> = (offset..offset + t).map(|p| p as i64).collect();
        self.rope_with(rope, positions, 1)
    }

    /// Rotates `self`, `[.., T, Dh]`, at explicit position ids: an I64 tensor
    /// `[T]` shared by all rows, or `[G, T]` where G divides the product of
    /// the leading dims and leading row `o` uses `positions[o / (rows / G)]`
    /// (for `[B, H, T, Dh]` with `[B, T]` ids: one row of ids per sequence).
    pub fn rope_at(&self, rope: &Rope, positions: &Tensor) -> Result<Tensor> {
        let ids = index_values(OP, self, positions)?;
        let groups = match positions.dims() {
            [_] => 1,
            [g, _] => *g,
            _ => {
                return Err(Error::InvalidShape {
                    op: OP,
                    msg: format!("positions must be [T] or [G, T], got {:?}", positions.shape()),
                })
            }
        };
        let t = if self.rank() >= 2 {
            self.dims()[self.rank() - 2]
        } else {
            0
        };
        if positions.dims().last() != Some(&t) {
            return Err(Error::ShapeMismatch {
                op: OP,
                lhs: self.shape().clone(),
                rhs: positions.shape().clone(),
            });
        }
        self.rope_with(rope, ids, groups)
    }

    fn rope_with(&self, rope: &Rope, positions: Vec<i64>, groups: usize) -> Result<Tensor> {
        check_float(OP, self)?;
        if self.dtype() != rope.cos.dtype() {
            return Err(Error::DTypeMismatch {
                op: OP,
                lhs: self.dtype(),
                rhs: rope.cos.dtype(),
            });
        }
        if self.device() != rope.cos.device() {
            return Err(Error::DeviceMismatch {
                op: OP,
                lhs: self.device(),
                rhs: rope.cos.device(),
            });
        }
        let rank = self.rank();
        if rank < 2 || self.dims()[rank - 1] != rope.head_dim {
            return Err(Error::InvalidShape {
                op: OP,
                msg: format!("expected [.., T, {}], got {:?}", rope.head_dim, self.shape()),
            });
        }
        let (t, dh) = (self.dims()[rank - 2], rope.head_dim);
        let outer: usize = self.dims()[..rank - 2].iter().product();
        if groups == 0 || (outer > 0 && !outer.is_multiple_of(groups)) {
            return Err(Error::InvalidShape {
                op: OP,
                msg: format!(
                    "{groups} rows of positions do not divide the {outer} leading rows of {:?}",
                    self.shape()
                ),
            });
        }
        let plan = Plan {
            positions,
            groups,
            outer,
            t,
            dh,
        };
        // On the CPU a view with contiguous head vectors (q and k as the
        // projections' [B, T, H, Dh] read as [B, H, T, Dh]) is rotated from
        // where its rows are, without a contiguous copy first.
        let x = if self.device().is_cpu() && self.layout().strides().last() == Some(&1) {
            self.clone()
        } else {
            self.contiguous()?
        };
        if !x.device().is_cpu() {
            let p = &plan;
            let y = crate::cuda_backend::rope(&x, &p.positions, p.groups, &rope.cos, &rope.sin, 1.0)?;
            let shape = x.shape().clone();
            let back = RopeBackward {
                x,
                rope: rope.clone(),
                plan,
            };
            return Ok(Tensor::from_op(y, shape, back));
        }
        float_call!(x.dtype(), OP, forward(x, rope, plan))
    }
}
