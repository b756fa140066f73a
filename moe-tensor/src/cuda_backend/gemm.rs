//! Matrix products on CUDA through cuBLAS: f32 (on bf16 tensor cores under
//! `MatmulPrecision::Bf16`), and bf16 with f32 accumulation, one strided-batched call per product (see moe-kernels'
//! `cuda::gemm_plan` for how row-major views map to column-major cuBLAS).
//! Operands whose layout cuBLAS cannot read (non-uniform batch offsets,
//! no unit stride) are copied to row-major first.

use super::device::cuda_err;
use super::layout::copy_layout;
use super::memory::{cuda_of, CudaStorage};
use crate::precision::{matmul_precision, MatmulPrecision};
use crate::storage::Storage;
use crate::{DType, Error, Layout, Result, Shape, Tensor};
use cudarc::cublas::result::CublasError;
use cudarc::cublas::sys::{cublasComputeType_t, cublasGemmAlgo_t, cublasOperation_t, cudaDataType_t};
use cudarc::cublas::{CudaBlas, Gemm, GemmConfig, StridedBatchedConfig};
use cudarc::driver::{CudaStream, CudaView, CudaViewMut, DevicePtr, DevicePtrMut};
use half::bf16;
use moe_kernels::cpu::strided::{offsets, Strided};
use moe_kernels::cuda::gemm_plan::{operand, uniform_stride, OperandPlan};
use std::ffi::c_void;

const OP: &str = "matmul";

/// One operand as cuBLAS reads it: its (possibly copied) storage, the
/// element offset of its first matrix, the plan and the batch stride.
struct Operand<'a> {
    copied: Option<CudaStorage>,
    original: &'a CudaStorage,
    first: usize,
    plan: OperandPlan,
    batch_stride: usize,
}

impl Operand<'_> {
    fn storage(&self) -> &CudaStorage {
        self.copied.as_ref().unwrap_or(self.original)
    }
}

/// Plans operand `[batch.., r, c]` (layout already broadcast to the batch).
fn plan<'a>(s: &'a CudaStorage, l: &Layout, nbatch: usize) -> Result<Operand<'a>> {
    let rank = l.dims().len();
    let (r, c) = (l.dims()[rank - 2], l.dims()[rank - 1]);
    let (rs, cs) = (l.strides()[rank - 2], l.strides()[rank - 1]);
    let offs = if nbatch == 0 {
        vec![l.offset()]
    } else {
        offsets(Strided {
            dims: &l.dims()[..nbatch],
            strides: &l.strides()[..nbatch],
            offset: l.offset(),
        })
    };
    if let (Some(p), Some(step), Some(&first)) = (operand(r, c, rs, cs), uniform_stride(&offs), offs.first()) {
        return Ok(Operand {
            copied: None,
            original: s,
            first,
            plan: p,
            batch_stride: step,
        });
    }
    // Copy to row-major [batch.., r, c]: matrices r*c apart, rows c apart.
    let copy = copy_layout(s, l)?;
    Ok(Operand {
        copied: Some(copy),
        original: s,
        first: 0,
        plan: OperandPlan {
            transpose: false,
            ld: c.max(1),
        },
        batch_stride: r * c,
    })
}

fn op_of(p: OperandPlan) -> cublasOperation_t {
    if p.transpose {
        cublasOperation_t::CUBLAS_OP_T
    } else {
        cublasOperation_t::CUBLAS_OP_N
    }
}

fn i32_of(n: usize, what: &str) -> Result<i32> {
    i32::try_from(n).map_err(|_| Error::InvalidShape {
        op: OP,
        msg: format!("{what} = {n} exceeds cuBLAS's int range"),
    })
}

fn long(x: usize) -> Result<i64> {
    i64::try_from(x).map_err(|_| Error::InvalidShape {
        op: OP,
        msg: format!("batch stride {x} exceeds i64"),
    })
}

/// The cuBLAS call for row-major `C[nb, m, n] = A[nb, m, k] · B[nb, k, n]`:
/// column-major `Cᵀ[n, m] = op(B)[n, k] · op(A)[k, m]` (see gemm_plan).
fn config<T>(
    pa: &Operand<'_>,
    pb: &Operand<'_>,
    (m, n, k, nb): (usize, usize, usize, usize),
    alpha: T,
    beta: T,
) -> Result<StridedBatchedConfig<T>> {
    Ok(StridedBatchedConfig {
        gemm: GemmConfig {
            transa: op_of(pb.plan),
            transb: op_of(pa.plan),
            m: i32_of(n, "n")?,
            n: i32_of(m, "m")?,
            k: i32_of(k, "k")?,
            alpha,
            lda: i32_of(pb.plan.ld, "ld of B")?,
            ldb: i32_of(pa.plan.ld, "ld of A")?,
            beta,
            ldc: i32_of(n, "n")?,
        },
        batch_size: i32_of(nb, "batch")?,
        stride_a: long(pb.batch_stride)?,
        stride_b: long(pa.batch_stride)?,
        stride_c: long(m * n)?,
    })
}

/// An f32 strided-batched product on bf16 tensor cores: f32 operands and
/// output, `CUBLAS_COMPUTE_32F_FAST_16BF` (cuBLAS rounds the operands to bf16
/// and accumulates in f32; [`MatmulPrecision::Bf16`]).
///
/// # Safety
/// As `Gemm::gemm_strided_batched`: `cfg` must describe matrices inside the
/// three buffers, and `stream` must be the one `blas` runs on.
unsafe fn gemm_f32_fast_bf16(
    blas: &CudaBlas,
    stream: &CudaStream,
    cfg: &StridedBatchedConfig<f32>,
    a: &CudaView<'_, f32>,
    b: &CudaView<'_, f32>,
    c: &mut CudaViewMut<'_, f32>,
) -> std::result::Result<(), CublasError> {
    let (a, _record_a) = a.device_ptr(stream);
    let (b, _record_b) = b.device_ptr(stream);
    let (c, _record_c) = c.device_ptr_mut(stream);
    let g = &cfg.gemm;
    cudarc::cublas::result::gemm_strided_batched_ex(
        *blas.handle(),
        g.transa,
        g.transb,
        g.m,
        g.n,
        g.k,
        (&g.alpha) as *const f32 as *const c_void,
        a as *const c_void,
        cudaDataType_t::CUDA_R_32F,
        g.lda,
        cfg.stride_a,
        b as *const c_void,
        cudaDataType_t::CUDA_R_32F,
        g.ldb,
        cfg.stride_b,
        (&g.beta) as *const f32 as *const c_void,
        c as *mut c_void,
        cudaDataType_t::CUDA_R_32F,
        g.ldc,
        cfg.stride_c,
        cfg.batch_size,
        cublasComputeType_t::CUBLAS_COMPUTE_32F_FAST_16BF,
        cublasGemmAlgo_t::CUBLAS_GEMM_DEFAULT,
    )
}

/// `[batch.., m, k] · [batch.., k, n]` with both layouts broadcast to the
/// batch shape `batch`; f32 or bf16 (f32 accumulation), same dtype.
#[allow(clippy::too_many_arguments)]
pub(crate) fn matmul(
    a: &Tensor,
    la: &Layout,
    b: &Tensor,
    lb: &Layout,
    batch: &[usize],
    m: usize,
    n: usize,
    k: usize,
) -> Result<Storage> {
    let dtype = a.dtype();
    if !matches!(dtype, DType::F32 | DType::BF16) {
        return Err(Error::UnsupportedDType { op: OP, dtype });
    }
    let nb: usize = batch.iter().product();
    let (ga, gb) = (a.read_storage(), b.read_storage());
    let (ac, bc) = (cuda_of(&ga, OP)?, cuda_of(&gb, OP)?);
    let dev = ac.dev().clone();
    let total = Shape::from([nb, m, n].as_slice()).elem_count();
    let mut out = CudaStorage::alloc(&dev, dtype, total, OP)?;
    if total == 0 {
        return Ok(Storage::Cuda(out));
    }
    if k == 0 {
        // An empty sum: C = 0 (cuBLAS is not asked to handle k = 0).
        match dtype {
            DType::F32 => dev.stream.memset_zeros(&mut out.view_mut::<f32>(OP)?),
            _ => dev.stream.memset_zeros(&mut out.view_mut::<u16>(OP)?),
        }
        .map_err(cuda_err(OP))?;
        return Ok(Storage::Cuda(out));
    }
    let pa = plan(ac, la, batch.len())?;
    let pb = plan(bc, lb, batch.len())?;
    let blas = dev.blas(OP)?;
    let (sa, sb) = (pa.storage(), pb.storage());
    match dtype {
        DType::F32 => {
            let cfg = config(&pa, &pb, (m, n, k, nb), 1.0f32, 0.0f32)?;
            let (av, bv) = (
                sa.view::<f32>(pa.first..sa.len(), OP)?,
                sb.view::<f32>(pb.first..sb.len(), OP)?,
            );
            let mut cv = out.view_mut::<f32>(OP)?;
            if matmul_precision() == MatmulPrecision::Bf16 {
                // SAFETY: as below; the call is cudarc's f32 one with only the
                // compute type changed.
                unsafe { gemm_f32_fast_bf16(&blas, &dev.stream, &cfg, &bv, &av, &mut cv) }.map_err(cuda_err(OP))?;
            } else {
                // SAFETY: the plans keep every element cuBLAS reads inside the
                // views (strides and leading dimensions come from layouts that
                // lie within their storage); C holds nb*m*n elements.
                unsafe { blas.gemm_strided_batched(cfg, &bv, &av, &mut cv) }.map_err(cuda_err(OP))?;
            }
        }
        _ => {
            let cfg = config(&pa, &pb, (m, n, k, nb), bf16::ONE, bf16::ZERO)?;
            let (av, bv) = (
                sa.view::<bf16>(pa.first..sa.len(), OP)?,
                sb.view::<bf16>(pb.first..sb.len(), OP)?,
            );
            let mut cv = out.view_mut::<bf16>(OP)?;
            // SAFETY: as for f32.
            unsafe { blas.gemm_strided_batched(cfg, &bv, &av, &mut cv) }.map_err(cuda_err(OP))?;
        }
    }
    Ok(Storage::Cuda(out))
}
