//! The LM head's product and its cross-entropy as one op:
//! `cross_entropy(h · Wᵀ, targets)`, the fused linear cross-entropy of
//! Liger-Kernel and Cut Cross-Entropy. The `[N, V]` logits never exist at
//! once: forward computes them in chunks of rows (about 8 MiB, and at least
//! D/2 rows; W packed once for all of them, moe-kernels' `gemm_row_chunks`)
//! and turns each chunk into its rows' losses and gradient before the next;
//! nothing keeps them for backward.
//!
//! Training keeps that gradient in bf16 bits when products run in bf16
//! precision: it is what the two backward products would round it to, so
//! they give the separate ops' bits, from half the memory and half the
//! reads, with no conversion left in their packing. Backward multiplies it
//! straight into `dh = G·W` and `dW = Gᵀ·h` (moe-kernels' `gemm_bf16_a`).
//!
//! Same results as `h.matmul(&w.t())?.cross_entropy(..)`: the loss to the
//! bit, and the gradients to the bit for an upstream gradient of 1 (or in
//! f32 precision). Other upstream gradients scale the bf16 gradient after
//! the product instead of before its rounding. Off the CPU it is the two
//! separate ops.

use super::cross_entropy::Reduction;
use super::fused_util::{check_float, check_like, elems, float_call, plain, Float};
use super::index::{index_values, kernel_err};
use crate::backprop::{is_grad_enabled, BackwardOp};
use crate::precision::cpu_product_precision;
use crate::storage::Storage;
use crate::{Error, Result, Shape, Tensor};
use moe_kernels::cpu::cross_entropy::{cross_entropy_rows, grad_scale, GradOut, LOSS_BLOCK_ROWS};
use moe_kernels::cpu::gemm::{gemm_bf16_a, gemm_row_chunks, gemm_with, Bf16Ref, MatMut, MatRef, ProductPrecision};
use std::any::TypeId;

const OP: &str = "linear_cross_entropy";

/// The logits' gradient for an upstream gradient of 1, `[N, V]` row-major.
enum LogitsGrad<T> {
    Full(Vec<T>),
    /// bf16 bits (only for f32 in bf16 precision).
    Bf16(Vec<u16>),
}

struct LinearCrossEntropyBackward<T> {
    /// `[.., D]` as given, and its contiguous `[N, D]` rows.
    h: Tensor,
    h_rows: Tensor,
    /// `[V, D]`, contiguous.
    w: Tensor,
    grad: LogitsGrad<T>,
    precision: ProductPrecision,
}

impl<T: Float> BackwardOp for LinearCrossEntropyBackward<T> {
    fn name(&self) -> &'static str {
        "linear_cross_entropy"
    }
    fn inputs(&self) -> Vec<&Tensor> {
        vec![&self.h, &self.w]
    }
    fn backward(&self, g: &Tensor) -> Result<Vec<Option<Tensor>>> {
        let dloss = g.to_scalar_f64()?;
        let (v, d) = (self.w.dims()[0], self.w.dims()[1]);
        let n = self.h_rows.dims()[0];
        let hs = self.h_rows.read_storage();
        let ws = self.w.read_storage();
        let (hv, wv) = (elems::<T>(&hs, &self.h_rows, OP)?, elems::<T>(&ws, &self.w, OP)?);
        // Scaled like the separate cross-entropy's backward (before the
        // products) where the gradient is in T; the bf16 one is scaled by
        // the products' alpha.
        let scaled;
        let (grad, alpha) = match &self.grad {
            LogitsGrad::Full(gv) if dloss != 1.0 => {
                let s = T::from_f64_lossy(dloss);
                scaled = LogitsGrad::Full(gv.iter().map(|&x| x * s).collect());
                (&scaled, T::one())
            }
            LogitsGrad::Full(_) => (&self.grad, T::one()),
            LogitsGrad::Bf16(_) => (&self.grad, T::from_f64_lossy(dloss)),
        };
        // dh [N, D] = G [N, V] · W [V, D]
        let dh = self.h.requires_grad().then(|| {
            let out = grad.times(self.precision, alpha, (n, v), (v, 1), wv, d);
            plain(out, self.h.shape())
        });
        // dW [V, D] = Gᵀ [V, N] · h [N, D]
        let dw = self.w.requires_grad().then(|| {
            let out = grad.times(self.precision, alpha, (v, n), (1, v), hv, d);
            plain(out, self.w.shape())
        });
        Ok(vec![dh, dw])
    }
}

impl<T: Float> LogitsGrad<T> {
    /// `alpha · G · b` into a new row-major `[m, d]` buffer: `G` this
    /// gradient viewed as an `m × k` matrix with strides `(rs, cs)` (itself
    /// or its transpose), `b` a row-major `[k, d]`.
    fn times(
        &self,
        precision: ProductPrecision,
        alpha: T,
        (m, k): (usize, usize),
        (rs, cs): (usize, usize),
        b: &[T],
        d: usize,
    ) -> Vec<T> {
        let mut out = vec![T::zero(); m * d];
        let b = MatRef { data: b, rs: d, cs: 1 };
        let c = MatMut {
            data: &mut out,
            rs: d,
            cs: 1,
        };
        match self {
            LogitsGrad::Full(g) => gemm_with(precision, m, d, k, alpha, MatRef { data: g, rs, cs }, b, T::zero(), c),
            // Built only for T = f32 (see `forward`).
            LogitsGrad::Bf16(g) => {
                let a = Bf16Ref { data: g, rs, cs };
                gemm_bf16_a(m, d, k, alpha.to_f64_lossy() as f32, a, as_f32(b), 0.0, as_f32_mut(c));
            }
        }
        out
    }
}

fn as_f32<T: 'static>(x: MatRef<'_, T>) -> MatRef<'_, f32> {
    assert_eq!(TypeId::of::<T>(), TypeId::of::<f32>());
    // SAFETY: T is f32 (checked), so the slice's layout is f32's.
    let data = unsafe { &*(x.data as *const [T] as *const [f32]) };
    MatRef {
        data,
        rs: x.rs,
        cs: x.cs,
    }
}

fn as_f32_mut<T: 'static>(x: MatMut<'_, T>) -> MatMut<'_, f32> {
    assert_eq!(TypeId::of::<T>(), TypeId::of::<f32>());
    // SAFETY: as above.
    let data = unsafe { &mut *(x.data as *mut [T] as *mut [f32]) };
    MatMut {
        data,
        rs: x.rs,
        cs: x.cs,
    }
}

/// Bytes of logits per chunk. On the 2-core Zen 4 VM the bench model's
/// step ran as fast with 8 MiB (and 32) as with all 64 MiB at once, and
/// slower with 2 MiB, whose 64-row chunks keep the product from its speed.
const CHUNK_BYTES: usize = 8 << 20;

/// Rows per chunk of logits for a vocabulary of `v` and a hidden size of
/// `d`: [`CHUNK_BYTES`] of logits, but at least `d / 2` rows, because every
/// chunk streams all of the packed W past its rows. At N 4096, V 32768,
/// D 512 (moe-model's `examples/lm_head_loss.rs`), 64-row chunks (8 MiB) made the fused
/// loss 6–16% slower than the separate ops, and 256 or 1024 rows level with
/// them or faster, in bf16 and f32. A multiple of the loss's block of rows,
/// so the chunks sum the same blocks in the same order as one call would.
/// `MOE_LCE_CHUNK_ROWS` (read once) overrides it, for comparing sizes.
fn chunk_rows<T>(v: usize, d: usize) -> usize {
    static ROWS: std::sync::OnceLock<Option<usize>> = std::sync::OnceLock::new();
    let set = *ROWS.get_or_init(|| std::env::var("MOE_LCE_CHUNK_ROWS").ok().and_then(|s| s.parse().ok()));
    let rows = set.unwrap_or((CHUNK_BYTES / (v * size_of::<T>()).max(1)).max(d / 2));
    rows.div_ceil(LOSS_BLOCK_ROWS).max(1) * LOSS_BLOCK_ROWS
}

fn forward<T: Float>(h: &Tensor, w: Tensor, ids: Vec<i64>, ignore_index: i64, reduction: Reduction) -> Result<Tensor> {
    let (v, d) = (w.dims()[0], w.dims()[1]);
    let n = ids.len();
    let h_rows = h.contiguous()?.reshape((n, d))?;
    let precision = cpu_product_precision();
    let train = is_grad_enabled() && (h.requires_grad() || w.requires_grad());
    let n_valid = ids.iter().filter(|&&t| t != ignore_index).count();
    let scale = grad_scale(reduction, n_valid, T::one());
    let bf16 = precision == ProductPrecision::Bf16 && TypeId::of::<T>() == TypeId::of::<f32>();
    let mut grad = match (train, bf16) {
        (false, _) => None,
        (true, true) => Some(LogitsGrad::Bf16(vec![0u16; n * v])),
        (true, false) => Some(LogitsGrad::Full(vec![T::zero(); n * v])),
    };
    let mut parts = Vec::new();
    {
        let (hs, ws) = (h_rows.read_storage(), w.read_storage());
        let (hv, wv) = (elems::<T>(&hs, &h_rows, OP)?, elems::<T>(&ws, &w, OP)?);
        let mut sink = grad.as_mut();
        // logits rows = h · Wᵀ, a chunk at a time, each turned into its
        // rows' losses (and gradient) while it is in cache.
        let wt = MatRef { data: wv, rs: 1, cs: d };
        gemm_row_chunks(
            precision,
            n,
            v,
            d,
            MatRef { data: hv, rs: d, cs: 1 },
            wt,
            chunk_rows::<T>(v, d),
            |r0, len, logits| {
                let rows = r0 * v..(r0 + len) * v;
                let out = match &mut sink {
                    None => GradOut::None,
                    Some(LogitsGrad::Full(g)) => GradOut::Full(&mut g[rows]),
                    Some(LogitsGrad::Bf16(g)) => GradOut::Bf16(&mut g[rows]),
                };
                let sums = cross_entropy_rows(logits, &ids[r0..r0 + len], v, ignore_index, scale, out);
                parts.extend(sums.map_err(kernel_err(OP))?);
                Ok(())
            },
        )?;
    }
    let total: f64 = parts.iter().sum();
    let loss = match reduction {
        Reduction::Sum => total,
        // 0/0 = NaN when every row is ignored, as torch (and `cross_entropy`).
        Reduction::Mean => total / n_valid as f64,
    };
    let out = vec![T::from_f64_lossy(loss)];
    let scalar = Shape::from(Vec::<usize>::new());
    crate::profile::op_recorded(OP);
    let Some(grad) = grad else {
        return Ok(plain(out, &scalar));
    };
    let back = LinearCrossEntropyBackward {
        h: h.clone(),
        h_rows,
        w,
        grad,
        precision,
    };
    Ok(Tensor::from_op(Storage::Cpu(T::into_storage(out)), scalar, back))
}

impl Tensor {
    /// `cross_entropy(self · weightᵀ, targets)` without keeping the logits:
    /// `self` is `[.., D]` (the final hidden states), `weight` `[V, D]` (the
    /// LM head), `targets` I64 class ids shaped like `self`'s leading dims,
    /// with [`Tensor::cross_entropy`]'s `ignore_index` and reductions.
    /// Differentiable in `self` and `weight`; f32/f64. See the module docs
    /// for how it matches the two separate ops.
    pub fn linear_cross_entropy(
        &self,
        weight: &Tensor,
        targets: &Tensor,
        ignore_index: i64,
        reduction: Reduction,
    ) -> Result<Tensor> {
        check_float(OP, self)?;
        check_like(OP, self, weight)?;
        let rank = self.rank();
        let d = self.dims().last().copied().unwrap_or(0);
        if rank == 0 || weight.rank() != 2 || weight.dims()[1] != d {
            return Err(Error::ShapeMismatch {
                op: OP,
                lhs: self.shape().clone(),
                rhs: weight.shape().clone(),
            });
        }
        if targets.dims() != &self.dims()[..rank - 1] {
            return Err(Error::ShapeMismatch {
                op: OP,
                lhs: self.shape().clone(),
                rhs: targets.shape().clone(),
            });
        }
        if !self.device().is_cpu() {
            return self
                .matmul(&weight.t()?)?
                .cross_entropy(targets, ignore_index, reduction);
        }
        let ids = index_values(OP, self, targets)?;
        let w = weight.contiguous()?;
        float_call!(self.dtype(), OP, forward(self, w, ids, ignore_index, reduction))
    }
}
