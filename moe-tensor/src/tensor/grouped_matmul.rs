//! Grouped matmul over contiguous row segments (MoE experts), a fused op with
//! explicit forward and backward kernels from `moe_kernels::cpu::grouped_gemm`.
//!
//! `x_MD` holds token copies sorted by expert: segment `e` is `counts[e]` rows.
//! `y[seg e] = x[seg e] · w[e]`. Backward: `dx[seg e] = dy[seg e] · w[e]ᵀ` (the
//! same op on a transposed view of `w`) and `dw[e] = x[seg e]ᵀ · dy[seg e]`,
//! which is zero, not missing, for an expert with no rows.

use crate::backprop::BackwardOp;
use crate::dtype::WithDType;
use crate::precision::cpu_product_precision;
use crate::storage::Storage;
use crate::{DType, Error, Result, Segments, Shape, Tensor};
use moe_kernels::cpu::gemm::{BatchStrides, MatRef, ProductPrecision};
use moe_kernels::cpu::grouped_gemm::{grouped_gemm_new, grouped_gemm_tn_new};
use moe_kernels::{KernelError, Real};
use num_traits::One;

const OP: &str = "grouped_matmul";

fn kernel_err(op: &'static str) -> impl Fn(KernelError) -> Error {
    move |e| Error::Kernel { op, msg: e.to_string() }
}

struct GroupedMatmulBackward {
    x: Tensor,
    w: Tensor,
    segments: Segments,
}

impl BackwardOp for GroupedMatmulBackward {
    fn name(&self) -> &'static str {
        OP
    }
    fn inputs(&self) -> Vec<&Tensor> {
        vec![&self.x, &self.w]
    }
    fn backward(&self, g: &Tensor) -> Result<Vec<Option<Tensor>>> {
        let gx = if self.x.requires_grad() {
            Some(g.grouped_matmul(&self.w.transpose(1, 2)?, &self.segments)?)
        } else {
            None
        };
        let gw = if !self.w.requires_grad() {
            None
        } else if self.w.layout().is_transposed_contiguous(1, 2) {
            // `w` is `w_EFD.transpose(1, 2)` (the HF layout): compute the
            // gradient as `[E, F, D]` and hand back its transposed view, so the
            // parameter receives a contiguous gradient.
            Some(grouped_weight_grad(g, &self.x, &self.segments)?.transpose(1, 2)?)
        } else {
            Some(grouped_weight_grad(&self.x, g, &self.segments)?)
        };
        Ok(vec![gx, gw])
    }
}

/// A matrix view of a rank-2 tensor's data: strides and storage offset.
fn mat<'a, T>(data: &'a [T], t: &Tensor) -> MatRef<'a, T> {
    let s = t.layout().strides();
    MatRef {
        data: data.get(t.layout().offset()..).unwrap_or(&[]),
        rs: s[0],
        cs: s[1],
    }
}

fn forward<T: Real>(
    precision: ProductPrecision,
    x: &[T],
    xt: &Tensor,
    w: &[T],
    wt: &Tensor,
    counts: &[usize],
) -> Result<Vec<T>> {
    let (m, k, n) = (xt.dims()[0], xt.dims()[1], wt.dims()[2]);
    let ws = wt.layout().strides();
    let b_s = BatchStrides {
        bs: ws[0],
        rs: ws[1],
        cs: ws[2],
    };
    let w = w.get(wt.layout().offset()..).unwrap_or(&[]);
    // Rows past the segments (Σ counts < M) belong to no expert: zero.
    grouped_gemm_new(precision, counts, m, k, n, T::one(), mat(x, xt), w, b_s).map_err(kernel_err(OP))
}

/// `dw[e] = x[seg e]ᵀ · g[seg e]`, shape `[E, D, F]` for `x [M, D]` and
/// `g [M, F]`; zero for empty segments.
fn grouped_weight_grad(x: &Tensor, g: &Tensor, segments: &Segments) -> Result<Tensor> {
    let op = "grouped_matmul_backward";
    let (d, f, e) = (x.dims()[1], g.dims()[1], segments.num_experts());
    if !x.device().is_cpu() {
        let dw = match segments {
            Segments::Counts(counts) => crate::cuda_backend::grouped_weight_grad(x, g, counts)?,
            Segments::Offsets(o) => crate::cuda_backend::grouped_weight_grad_offsets(x, g, o)?,
        };
        return Ok(Tensor::from_storage(dw, Shape::from(vec![e, d, f])));
    }
    let counts = &segments.host_counts(x.dims()[0], op)?;
    let out = {
        let (gx, gg) = (x.read_storage(), g.read_storage());
        let precision = cpu_product_precision();
        crate::map_float2!(gx.cpu(op)?, gg.cpu(op)?, op, |vx, vg: T| {
            let dw = grouped_gemm_tn_new(precision, counts, d, f, T::one(), mat(vx, x), mat(vg, g))
                .map_err(kernel_err(op))?;
            Ok(T::into_storage(dw))
        })?
    };
    Ok(Tensor::from_storage(
        Storage::Cpu(out),
        Shape::from(vec![counts.len(), d, f]),
    ))
}

/// Checks ranks, shapes, counts, dtypes and devices of a grouped matmul.
fn check(x: &Tensor, w: &Tensor, segments: &Segments) -> Result<()> {
    if x.rank() != 2 || w.rank() != 3 {
        return Err(Error::InvalidShape {
            op: OP,
            msg: format!(
                "needs x [M, D] and w [E, D, F], got {:?} and {:?}",
                x.shape(),
                w.shape()
            ),
        });
    }
    if x.dims()[1] != w.dims()[1] {
        return Err(Error::ShapeMismatch {
            op: OP,
            lhs: x.shape().clone(),
            rhs: w.shape().clone(),
        });
    }
    if segments.num_experts() != w.dims()[0] {
        return Err(Error::InvalidShape {
            op: OP,
            msg: format!(
                "{} segments for {} expert matrices",
                segments.num_experts(),
                w.dims()[0]
            ),
        });
    }
    segments.check(x.dims()[0], &x.device(), OP)?;
    if x.dtype() != w.dtype() {
        return Err(Error::DTypeMismatch {
            op: OP,
            lhs: x.dtype(),
            rhs: w.dtype(),
        });
    }
    if !matches!(x.dtype(), DType::F32 | DType::F64) {
        return Err(Error::UnsupportedDType {
            op: OP,
            dtype: x.dtype(),
        });
    }
    if x.device() != w.device() {
        return Err(Error::DeviceMismatch {
            op: OP,
            lhs: x.device(),
            rhs: w.device(),
        });
    }
    Ok(())
}

impl Tensor {
    /// Grouped matmul over contiguous row segments, the expert products of an
    /// MoE layer: `self` is `x_MD` (rows sorted by expert), `w` is `[E, D, F]`
    /// and `segments` says which rows of `x` (in order, possibly none) go to
    /// expert `e`: host counts (`&[usize]`, summing to at most `M`) or
    /// device offsets ([`Segments::Offsets`]). Returns `[M, F]` with
    /// `y[seg e] = x[seg e] · w[e]`; rows past the last segment (a dispatch
    /// plan's dropped copies) are zero and get zero gradient.
    ///
    /// One kernel call covers every segment (parallel across segments). Any
    /// strides are read in place, so an HF-layout weight `[E, F, D]` is used as
    /// `w_EFD.transpose(1, 2)` without a copy. Differentiable in `self` and `w`;
    /// an expert with no rows gets a zero gradient. F32/F64.
    ///
    /// On a CUDA device, with host counts every non-empty segment is one
    /// problem of a single cuBLAS grouped GEMM call
    /// (`cublasGemmGroupedBatchedEx`, cuBLAS ≥ 12.5), forward and for the
    /// weight gradient; with device offsets one kernel (grouped_seg.cu)
    /// reads the segments itself, so nothing waits for the routing.
    pub fn grouped_matmul(&self, w: &Tensor, segments: impl Into<Segments>) -> Result<Tensor> {
        let segments = segments.into();
        check(self, w, &segments)?;
        let out = if !self.device().is_cpu() {
            match &segments {
                Segments::Counts(counts) => crate::cuda_backend::grouped_matmul(self, w, counts)?,
                Segments::Offsets(o) => crate::cuda_backend::grouped_matmul_offsets(self, w, o)?,
            }
        } else {
            let counts = &segments.host_counts(self.dims()[0], OP)?;
            let (gx, gw) = (self.read_storage(), w.read_storage());
            let precision = cpu_product_precision();
            Storage::Cpu(crate::map_float2!(gx.cpu(OP)?, gw.cpu(OP)?, OP, |vx, vw: T| {
                Ok(T::into_storage(forward(precision, vx, self, vw, w, counts)?))
            })?)
        };
        let shape = Shape::from(vec![self.dims()[0], w.dims()[2]]);
        let back = GroupedMatmulBackward {
            x: self.clone(),
            w: w.clone(),
            segments,
        };
        Ok(Tensor::from_op(out, shape, back))
    }
}
