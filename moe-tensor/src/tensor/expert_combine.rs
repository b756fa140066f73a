//! Weighted combine of MoE expert outputs back into tokens, fused: one pass
//! forward and one backward (`moe_kernels::cpu::grouped_gemm::combine_rows`),
//! instead of a gather, a broadcast multiply and a sum over K that each
//! materialise `[N·K, D]` (and twice as many passes in backward).

use crate::backprop::BackwardOp;
use crate::dtype::WithDType;
use crate::storage::Storage;
use crate::{DType, Error, Result, Shape, Tensor};
use moe_kernels::cpu::grouped_gemm::{combine_rows, combine_rows_backward};
use moe_kernels::KernelError;

const OP: &str = "expert_combine";

fn kernel_err(op: &'static str) -> impl Fn(KernelError) -> Error {
    move |e| match e {
        KernelError::IndexOutOfBounds { index, size, .. } => Error::IndexOutOfRange { op, index, size },
        other => Error::Kernel {
            op,
            msg: other.to_string(),
        },
    }
}

struct ExpertCombineBackward {
    y: Tensor,
    w: Tensor,
    rows: Vec<i64>,
    k: usize,
}

impl BackwardOp for ExpertCombineBackward {
    fn name(&self) -> &'static str {
        OP
    }
    fn inputs(&self) -> Vec<&Tensor> {
        vec![&self.y, &self.w]
    }
    fn backward(&self, g: &Tensor) -> Result<Vec<Option<Tensor>>> {
        let op = "expert_combine_backward";
        let d = self.y.dims()[1];
        let g = g.contiguous()?;
        let (dy, dw) = if !g.device().is_cpu() {
            crate::cuda_backend::expert_combine_backward(&self.y, &self.w, &self.rows, self.k, &g)?
        } else {
            let (gy, gw, gg) = (self.y.read_storage(), self.w.read_storage(), g.read_storage());
            let (oy, ow, og) = (self.y.layout().offset(), self.w.layout().offset(), g.layout().offset());
            let (ny, nw, ng) = (self.y.elem_count(), self.w.elem_count(), g.elem_count());
            macro_rules! run {
                ($y:expr, $w:expr, $g:expr, $T:ty) => {{
                    let mut dy = vec![<$T>::default(); ny];
                    let mut dw = vec![<$T>::default(); nw];
                    if d > 0 {
                        let (y, w, g) = (&$y[oy..oy + ny], &$w[ow..ow + nw], &$g[og..og + ng]);
                        combine_rows_backward(y, d, &self.rows, w, self.k, g, &mut dy, &mut dw)
                            .map_err(kernel_err(op))?;
                    }
                    (<$T>::into_storage(dy), <$T>::into_storage(dw))
                }};
            }
            use crate::storage::CpuStorage as S;
            let (dy, dw) = match (gy.cpu(op)?, gw.cpu(op)?, gg.cpu(op)?) {
                (S::F32(y), S::F32(w), S::F32(g)) => run!(y, w, g, f32),
                (S::F64(y), S::F64(w), S::F64(g)) => run!(y, w, g, f64),
                (y, ..) => return Err(Error::UnsupportedDType { op, dtype: y.dtype() }),
            };
            (Storage::Cpu(dy), Storage::Cpu(dw))
        };
        let gy = self
            .y
            .requires_grad()
            .then(|| Tensor::from_storage(dy, self.y.shape().clone()));
        let gw = self
            .w
            .requires_grad()
            .then(|| Tensor::from_storage(dw, self.w.shape().clone()));
        Ok(vec![gy, gw])
    }
}

fn check(y: &Tensor, rows: &Tensor, w: &Tensor) -> Result<()> {
    if y.rank() != 2 || rows.rank() != 2 || w.dims() != rows.dims() {
        return Err(Error::InvalidShape {
            op: OP,
            msg: format!(
                "needs y [M, D], rows [N, K] and weights [N, K], got {:?}, {:?} and {:?}",
                y.shape(),
                rows.shape(),
                w.shape()
            ),
        });
    }
    if rows.dtype() != DType::I64 {
        return Err(Error::DTypeMismatch {
            op: OP,
            lhs: rows.dtype(),
            rhs: DType::I64,
        });
    }
    if y.dtype() != w.dtype() {
        return Err(Error::DTypeMismatch {
            op: OP,
            lhs: y.dtype(),
            rhs: w.dtype(),
        });
    }
    if !matches!(y.dtype(), DType::F32 | DType::F64) {
        return Err(Error::UnsupportedDType {
            op: OP,
            dtype: y.dtype(),
        });
    }
    if y.device() != w.device() || y.device() != rows.device() {
        return Err(Error::DeviceMismatch {
            op: OP,
            lhs: y.device(),
            rhs: if y.device() != w.device() {
                w.device()
            } else {
                rows.device()
            },
        });
    }
    Ok(())
}

/// The CPU kernel's checks of the row ids, for the device path (which read
/// them back): with `d > 0` an empty K is the kernel's length error, and a
/// row id past the `m` rows of `y` is `IndexOutOfRange`.
fn check_rows(ids: &[i64], m: usize, k: usize, d: usize) -> Result<()> {
    if d > 0 && k == 0 {
        return Err(kernel_err(OP)(KernelError::LengthMismatch {
            op: "combine_rows",
            buffer: "rows",
            expected: 0,
            got: 0,
        }));
    }
    match ids.iter().find(|&&r| r >= 0 && r as u64 >= m as u64) {
        Some(&r) => Err(Error::IndexOutOfRange {
            op: OP,
            index: r,
            size: m,
        }),
        None => Ok(()),
    }
}

impl Tensor {
    /// Weighted combine of expert outputs: `self` is `y_MD` (one row per kept
    /// token copy), `rows` (I64) names the row each token copy reads (a
    /// negative entry: the copy was dropped and adds nothing) and `weights`
    /// its weight; returns `[N, D]` with `out[t] = Σ_k w[t,k] · y[rows[t,k]]`.
    ///
    /// Differentiable in `self` and `weights` (a dropped copy's weight gets
    /// zero gradient; a row no copy reads gets zero). F32/F64, same dtype.
    /// On a CUDA device `rows` is read back once to be checked (a sync).
    pub fn expert_combine(&self, rows: &Tensor, weights: &Tensor) -> Result<Tensor> {
        check(self, rows, weights)?;
        let (n, k, d) = (rows.dims()[0], rows.dims()[1], self.dims()[1]);
        let ids = rows.to_vec::<i64>()?;
        let (y, w) = (self.contiguous()?, weights.contiguous()?);
        if !y.device().is_cpu() {
            // The ids were read back above (one sync) to be checked here; the
            // kernel reads the device copy.
            check_rows(&ids, y.dims()[0], k, d)?;
            let out = crate::cuda_backend::expert_combine(&y, rows, &w)?;
            let back = ExpertCombineBackward { y, w, rows: ids, k };
            return Ok(Tensor::from_op(out, Shape::from(vec![n, d]), back));
        }
        let out = {
            let (gy, gw) = (y.read_storage(), w.read_storage());
            let (oy, ow) = (y.layout().offset(), w.layout().offset());
            let (ny, nw) = (y.elem_count(), w.elem_count());
            crate::map_float2!(gy.cpu(OP)?, gw.cpu(OP)?, OP, |vy, vw: T| {
                let mut out = vec![T::default(); n * d];
                if d > 0 {
                    combine_rows(&vy[oy..oy + ny], d, &ids, &vw[ow..ow + nw], k, &mut out).map_err(kernel_err(OP))?;
                } else if let Some(&r) = ids.iter().find(|&&r| r >= 0 && r as u64 >= y.dims()[0] as u64) {
                    return Err(Error::IndexOutOfRange {
                        op: OP,
                        index: r,
                        size: y.dims()[0],
                    });
                }
                Ok(T::into_storage(out))
            })?
        };
        let back = ExpertCombineBackward { y, w, rows: ids, k };
        Ok(Tensor::from_op(Storage::Cpu(out), Shape::from(vec![n, d]), back))
    }
}
