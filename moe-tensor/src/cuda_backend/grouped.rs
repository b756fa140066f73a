//! Grouped matmul over contiguous row segments on CUDA (the MoE expert GEMMs
//! of `Tensor::grouped_matmul`), f32 and f64: every non-empty segment is one
//! problem of a single `cublasGemmGroupedBatchedEx` call (cuBLAS 12.5 or
//! newer), for the forward and for the per-expert weight gradient.
//!
//! The segment sizes are host data, so planning the call needs no sync; the
//! matrices' device addresses (which cuBLAS reads from device memory) go up
//! in one copy queued on the stream. Operands are read in place through their
//! strides, so an HF `[E, F, D]` stack used as its (1, 2) transpose is a
//! cuBLAS transpose, not a copy (see moe-kernels' `cuda::gemm_plan`); an
//! operand cuBLAS cannot read is copied to row-major first.

use super::device::{cuda_err, CudaDev};
use super::layout::copy_layout;
use super::memory::{cuda_of, internal, upload_i64, CudaStorage};
use crate::precision::{matmul_precision, MatmulPrecision};
use crate::storage::Storage;
use crate::{DType, Error, Layout, Result, Tensor};
use cudarc::cublas::sys::{self, cublasComputeType_t, cublasOperation_t, cudaDataType_t};
use moe_kernels::cuda::gemm_plan::{operand, OperandPlan};
use std::ffi::c_void;
use std::sync::{Arc, OnceLock};

const OP: &str = "grouped_matmul";
const WOP: &str = "grouped_matmul_backward";

/// A row-major `[rows, cols]` matrix in a storage: element `(i, j)` at
/// `offset + i·rs + j·cs`.
#[derive(Clone, Copy, Debug)]
struct Mat {
    offset: usize,
    rows: usize,
    cols: usize,
    rs: usize,
    cs: usize,
}

impl Mat {
    fn plan(&self) -> Option<OperandPlan> {
        operand(self.rows, self.cols, self.rs, self.cs)
    }
}

/// One product `C = A · B` of the call: `C` is row-major
/// `[a.rows, b.cols]` at element `c_offset` of the output.
#[derive(Clone, Copy, Debug)]
struct Problem {
    a: Mat,
    b: Mat,
    c_offset: usize,
}

/// A problem with the way cuBLAS reads each of its operands.
type Planned = (Problem, OperandPlan, OperandPlan);

/// A tensor's element offset and strides in the storage cuBLAS reads.
type Place<'a> = (usize, &'a [usize]);

/// A tensor's elements as cuBLAS reads them: its own storage, or a
/// row-major copy when one of its matrices cannot be read in place.
struct Source<'a> {
    original: &'a CudaStorage,
    copy: Option<CudaStorage>,
    offset: usize,
    strides: Vec<usize>,
}

impl<'a> Source<'a> {
    fn new(storage: &'a CudaStorage, t: &Tensor) -> Source<'a> {
        Source {
            original: storage,
            copy: None,
            offset: t.layout().offset(),
            strides: t.layout().strides().to_vec(),
        }
    }

    fn storage(&self) -> &CudaStorage {
        self.copy.as_ref().unwrap_or(self.original)
    }

    fn place(&self) -> Place<'_> {
        (self.offset, &self.strides)
    }

    fn use_row_major_copy(&mut self, t: &Tensor) -> Result<()> {
        self.copy = Some(copy_layout(self.original, t.layout())?);
        self.offset = 0;
        self.strides = Layout::contiguous(t.shape().clone()).strides().to_vec();
        Ok(())
    }
}

/// The problems `make` builds from the places of `a` and `b`, planned;
/// a source whose matrices cuBLAS cannot read in place is copied first.
fn plan(
    (a, at): (&mut Source<'_>, &Tensor),
    (b, bt): (&mut Source<'_>, &Tensor),
    make: impl Fn(Place<'_>, Place<'_>) -> Vec<Problem>,
    op: &'static str,
) -> Result<Vec<Planned>> {
    let mut copied = false;
    loop {
        let problems = make(a.place(), b.place());
        let pa: Option<Vec<OperandPlan>> = problems.iter().map(|p| p.a.plan()).collect();
        let pb: Option<Vec<OperandPlan>> = problems.iter().map(|p| p.b.plan()).collect();
        match (pa, pb) {
            (Some(pa), Some(pb)) => {
                return Ok(problems
                    .into_iter()
                    .zip(pa)
                    .zip(pb)
                    .map(|((p, x), y)| (p, x, y))
                    .collect());
            }
            // Row-major copies are always readable.
            _ if copied => return Err(internal(op)),
            (pa, pb) => {
                if pa.is_none() {
                    a.use_row_major_copy(at)?;
                }
                if pb.is_none() {
                    b.use_row_major_copy(bt)?;
                }
                copied = true;
            }
        }
    }
}

/// `(expert, first row, rows)` of every segment.
fn segments(counts: &[usize]) -> impl Iterator<Item = (usize, usize, usize)> + '_ {
    counts.iter().enumerate().scan(0, |start, (e, &c)| {
        let first = *start;
        *start += c;
        Some((e, first, c))
    })
}

/// The element types of the grouped call: data and compute type, 1 and 0.
trait Scalar: Copy {
    const DATA: cudaDataType_t;
    /// The compute type at full precision.
    const COMPUTE: cublasComputeType_t;
    /// The compute type under the calling thread's matmul precision.
    fn compute() -> cublasComputeType_t {
        Self::COMPUTE
    }
    const ONE: Self;
    const ZERO: Self;
}

impl Scalar for f32 {
    const DATA: cudaDataType_t = cudaDataType_t::CUDA_R_32F;
    const COMPUTE: cublasComputeType_t = cublasComputeType_t::CUBLAS_COMPUTE_32F;
    /// bf16 tensor cores under `MatmulPrecision::Bf16` (as the strided
    /// matmul; whether every cuBLAS accepts it for the grouped call is to be
    /// seen on a GPU: a refusal is an `Error::Cuda`, not a silent fallback).
    fn compute() -> cublasComputeType_t {
        match matmul_precision() {
            MatmulPrecision::Bf16 => cublasComputeType_t::CUBLAS_COMPUTE_32F_FAST_16BF,
            MatmulPrecision::Highest => Self::COMPUTE,
        }
    }
    const ONE: f32 = 1.0;
    const ZERO: f32 = 0.0;
}

impl Scalar for f64 {
    const DATA: cudaDataType_t = cudaDataType_t::CUDA_R_64F;
    const COMPUTE: cublasComputeType_t = cublasComputeType_t::CUBLAS_COMPUTE_64F;
    const ONE: f64 = 1.0;
    const ZERO: f64 = 0.0;
}

/// Whether the loaded cuBLAS has the grouped GEMM (12.5 and newer): cudarc
/// panics when a missing symbol is called, so it is looked up first.
fn has_grouped_gemm() -> bool {
    static FOUND: OnceLock<bool> = OnceLock::new();
    // SAFETY: looks the symbol up without calling it; the library was loaded
    // (and found present) when the device's cuBLAS handle was made.
    *FOUND.get_or_init(|| unsafe { sys::culib().get::<unsafe extern "C" fn()>(b"cublasGemmGroupedBatchedEx") }.is_ok())
}

/// cuBLAS's arguments for one planned problem: row-major `C = A·B` is
/// column-major `Cᵀ = Bᵀ·Aᵀ`, so cuBLAS's first operand is `B` (see
/// gemm_plan) and its `m` is `C`'s column count. `first_at`, `second_at` and
/// `c_at` are the element offsets of cuBLAS's two operands (in the storages
/// of `B` and of `A`) and of `C`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct GemmArgs {
    transa: bool,
    transb: bool,
    m: i32,
    n: i32,
    k: i32,
    lda: i32,
    ldb: i32,
    ldc: i32,
    first_at: usize,
    second_at: usize,
    c_at: usize,
}

fn gemm_args(planned: &[Planned], op: &'static str) -> Result<Vec<GemmArgs>> {
    let int = |n: usize, what: &str| {
        i32::try_from(n).map_err(|_| Error::InvalidShape {
            op,
            msg: format!("{what} = {n} exceeds cuBLAS's int range"),
        })
    };
    planned
        .iter()
        .map(|(p, pa, pb)| {
            Ok(GemmArgs {
                transa: pb.transpose,
                transb: pa.transpose,
                m: int(p.b.cols, "n")?,
                n: int(p.a.rows, "m")?,
                k: int(p.a.cols, "k")?,
                lda: int(pb.ld, "ld of B")?,
                ldb: int(pa.ld, "ld of A")?,
                ldc: int(p.b.cols, "n")?,
                first_at: p.b.offset,
                second_at: p.a.offset,
                c_at: p.c_offset,
            })
        })
        .collect()
}

fn op_of(transpose: bool) -> cublasOperation_t {
    if transpose {
        cublasOperation_t::CUBLAS_OP_T
    } else {
        cublasOperation_t::CUBLAS_OP_N
    }
}

/// Runs every planned problem in one `cublasGemmGroupedBatchedEx` call on the
/// device's stream (one problem per group), `A` read from `a`, `B` from `b`,
/// `C` written (β = 0) into `c`.
fn grouped_call<T: Scalar>(
    dev: &Arc<CudaDev>,
    planned: &[Planned],
    (a, b, c): (&CudaStorage, &CudaStorage, &CudaStorage),
    op: &'static str,
) -> Result<()> {
    if planned.is_empty() {
        return Ok(());
    }
    let args = gemm_args(planned, op)?;
    let g = args.len();
    let column = |f: fn(&GemmArgs) -> i32| args.iter().map(f).collect::<Vec<i32>>();
    let (m, n, k) = (column(|a| a.m), column(|a| a.n), column(|a| a.k));
    let (lda, ldb, ldc) = (column(|a| a.lda), column(|a| a.ldb), column(|a| a.ldc));
    let transa: Vec<cublasOperation_t> = args.iter().map(|a| op_of(a.transa)).collect();
    let transb: Vec<cublasOperation_t> = args.iter().map(|a| op_of(a.transb)).collect();
    // Device addresses of cuBLAS's first operands, second operands and C
    // matrices, g of each, as i64 bit patterns (the upload's element type).
    let mut addresses = Vec::with_capacity(3 * g);
    for x in &args {
        addresses.push(b.address_of(x.first_at, op)? as i64);
    }
    for x in &args {
        addresses.push(a.address_of(x.second_at, op)? as i64);
    }
    for x in &args {
        addresses.push(c.address_of(x.c_at, op)? as i64);
    }
    let (alpha, beta, group_size) = (vec![T::ONE; g], vec![T::ZERO; g], vec![1i32; g]);
    let groups = i32::try_from(g).map_err(|_| Error::InvalidShape {
        op,
        msg: format!("{g} experts exceed cuBLAS's int range"),
    })?;
    let blas = dev.blas(op)?;
    if !has_grouped_gemm() {
        return Err(Error::Cuda {
            op,
            msg: "the loaded cuBLAS has no cublasGemmGroupedBatchedEx (needs cuBLAS 12.5 or newer)".into(),
        });
    }
    let table = upload_i64(dev, &addresses)?;
    let base = table.address_of(0, op)?;
    let run = |i: usize| (base + (i * g * std::mem::size_of::<i64>()) as u64) as usize;
    // SAFETY: the per-group arrays are host arrays of g entries, alive for
    // the call (cuBLAS reads them and α, β before returning: host pointer
    // mode); the address table is device memory whose upload is queued on
    // the handle's stream before the call, and it returns to the pool after
    // it (reuse is stream-ordered). Each address is an element of its
    // storage (address_of checks), the plans keep every element cuBLAS reads
    // inside its view's storage, and the C matrices are disjoint segments.
    unsafe {
        sys::cublasGemmGroupedBatchedEx(
            *blas.handle(),
            transa.as_ptr(),
            transb.as_ptr(),
            m.as_ptr(),
            n.as_ptr(),
            k.as_ptr(),
            alpha.as_ptr().cast::<c_void>(),
            run(0) as *const *const c_void,
            T::DATA,
            lda.as_ptr(),
            run(1) as *const *const c_void,
            T::DATA,
            ldb.as_ptr(),
            beta.as_ptr().cast::<c_void>(),
            run(2) as *const *mut c_void,
            T::DATA,
            ldc.as_ptr(),
            groups,
            group_size.as_ptr(),
            T::compute(),
        )
    }
    .result()
    .map_err(cuda_err(op))
}

/// The forward's problems: `x[seg e] [c, D] · w[e] [D, F]` into rows
/// `seg e` of `y [M, F]`, for every segment with rows (none when D or F is 0).
fn forward_problems(
    counts: &[usize],
    (d, f): (usize, usize),
    (xo, xs): Place<'_>,
    (wo, ws): Place<'_>,
) -> Vec<Problem> {
    segments(counts)
        .filter(|&(_, _, c)| c > 0 && d > 0 && f > 0)
        .map(|(e, first, c)| Problem {
            a: Mat {
                offset: xo + first * xs[0],
                rows: c,
                cols: d,
                rs: xs[0],
                cs: xs[1],
            },
            b: Mat {
                offset: wo + e * ws[0],
                rows: d,
                cols: f,
                rs: ws[1],
                cs: ws[2],
            },
            c_offset: first * f,
        })
        .collect()
}

/// The weight gradient's problems: `a[seg e]ᵀ [P, c] · b[seg e] [c, Q]` into
/// matrix `e` of `[E, P, Q]`, for every segment with rows.
fn weight_grad_problems(
    counts: &[usize],
    (p, q): (usize, usize),
    (ao, ast): Place<'_>,
    (bo, bst): Place<'_>,
) -> Vec<Problem> {
    segments(counts)
        .filter(|&(_, _, c)| c > 0 && p > 0 && q > 0)
        .map(|(e, first, c)| Problem {
            // a[seg e]ᵀ: the segment's [c, P] view with its strides swapped.
            a: Mat {
                offset: ao + first * ast[0],
                rows: p,
                cols: c,
                rs: ast[1],
                cs: ast[0],
            },
            b: Mat {
                offset: bo + first * bst[0],
                rows: c,
                cols: q,
                rs: bst[0],
                cs: bst[1],
            },
            c_offset: e * p * q,
        })
        .collect()
}

/// `y [M, F]` with `y[seg e] = x[seg e] · w[e]` for `x [M, D]`, `w [E, D, F]`
/// (any layouts, one float dtype) and the host segment sizes `counts`.
pub(crate) fn grouped_matmul(x: &Tensor, w: &Tensor, counts: &[usize]) -> Result<Storage> {
    match x.dtype() {
        DType::F32 => forward::<f32>(x, w, counts),
        DType::F64 => forward::<f64>(x, w, counts),
        dtype => Err(Error::UnsupportedDType { op: OP, dtype }),
    }
}

fn forward<T: Scalar>(x: &Tensor, w: &Tensor, counts: &[usize]) -> Result<Storage> {
    let (rows, d, f) = (x.dims()[0], x.dims()[1], w.dims()[2]);
    let (xs, ws) = (x.read_storage(), w.read_storage());
    let (xc, wc) = (cuda_of(&xs, OP)?, cuda_of(&ws, OP)?);
    let dev = xc.dev().clone();
    let mut y = CudaStorage::alloc(&dev, x.dtype(), rows * f, OP)?;
    if d == 0 || counts.iter().sum::<usize>() < rows {
        // Empty sums, or rows in no segment: zero where no problem writes.
        y.zero(OP)?;
    }
    let make = |x: Place<'_>, w: Place<'_>| forward_problems(counts, (d, f), x, w);
    let (mut a, mut b) = (Source::new(xc, x), Source::new(wc, w));
    let planned = plan((&mut a, x), (&mut b, w), make, OP)?;
    grouped_call::<T>(&dev, &planned, (a.storage(), b.storage(), &y), OP)?;
    Ok(Storage::Cuda(y))
}

/// `[E, P, Q]` with `out[e] = a[seg e]ᵀ · b[seg e]` for `a [M, P]` and
/// `b [M, Q]` (any layouts, one float dtype): the weight gradient of
/// grouped_matmul, zero for an expert with no rows.
pub(crate) fn grouped_weight_grad(a: &Tensor, b: &Tensor, counts: &[usize]) -> Result<Storage> {
    if a.dtype() != b.dtype() {
        return Err(Error::DTypeMismatch {
            op: WOP,
            lhs: a.dtype(),
            rhs: b.dtype(),
        });
    }
    match a.dtype() {
        DType::F32 => weight_grad::<f32>(a, b, counts),
        DType::F64 => weight_grad::<f64>(a, b, counts),
        dtype => Err(Error::UnsupportedDType { op: WOP, dtype }),
    }
}

fn weight_grad<T: Scalar>(a: &Tensor, b: &Tensor, counts: &[usize]) -> Result<Storage> {
    let (p, q) = (a.dims()[1], b.dims()[1]);
    let (as_, bs) = (a.read_storage(), b.read_storage());
    let (ac, bc) = (cuda_of(&as_, WOP)?, cuda_of(&bs, WOP)?);
    let dev = ac.dev().clone();
    let mut out = CudaStorage::alloc(&dev, a.dtype(), counts.len() * p * q, WOP)?;
    let make = |a: Place<'_>, b: Place<'_>| weight_grad_problems(counts, (p, q), a, b);
    let (mut sa, mut sb) = (Source::new(ac, a), Source::new(bc, b));
    let planned = plan((&mut sa, a), (&mut sb, b), make, WOP)?;
    if planned.len() < counts.len() {
        // Experts with no rows get a zero gradient, not a missing one.
        out.zero(WOP)?;
    }
    grouped_call::<T>(&dev, &planned, (sa.storage(), sb.storage(), &out), WOP)?;
    Ok(Storage::Cuda(out))
}

#[cfg(test)]
mod tests {
    //! The call's arithmetic on the host, no GPU needed: the planned problems
    //! run through a column-major GEMM that reads its arguments as cuBLAS
    //! does must equal the CPU's grouped matmul and weight gradient.
    use super::*;
    use crate::init::Rng;
    use crate::Device;

    /// cuBLAS's GEMM (α = 1, β = 0) on host buffers: column-major
    /// `C = op(first) · op(second)`.
    fn host_gemm(g: &GemmArgs, first: &[f64], second: &[f64], c: &mut [f64]) {
        let (m, n, k) = (g.m as usize, g.n as usize, g.k as usize);
        let (lda, ldb, ldc) = (g.lda as usize, g.ldb as usize, g.ldc as usize);
        for i in 0..m {
            for j in 0..n {
                let mut s = 0.0;
                for l in 0..k {
                    let a = if g.transa {
                        first[g.first_at + l + i * lda]
                    } else {
                        first[g.first_at + i + l * lda]
                    };
                    let b = if g.transb {
                        second[g.second_at + j + l * ldb]
                    } else {
                        second[g.second_at + l + j * ldb]
                    };
                    s += a * b;
                }
                c[g.c_at + i + j * ldc] = s;
            }
        }
    }

    /// Plans `make` for the views `a` and `b` of the contiguous tensors
    /// `a_base` and `b_base` (all read in place) and runs the problems on the
    /// host into `len` zeros.
    fn run_on_host(
        make: impl Fn(Place<'_>, Place<'_>) -> Vec<Problem>,
        (a, a_base): (&Tensor, &Tensor),
        (b, b_base): (&Tensor, &Tensor),
        len: usize,
    ) -> Vec<f64> {
        let (la, lb) = (a.layout(), b.layout());
        let problems = make((la.offset(), la.strides()), (lb.offset(), lb.strides()));
        let planned: Vec<Planned> = problems
            .into_iter()
            .map(|p| {
                (
                    p,
                    p.a.plan().expect("A read in place"),
                    p.b.plan().expect("B read in place"),
                )
            })
            .collect();
        let (a_data, b_data) = (a_base.to_vec_f64().unwrap(), b_base.to_vec_f64().unwrap());
        let mut c = vec![0.0; len];
        for g in gemm_args(&planned, "test").unwrap() {
            host_gemm(&g, &b_data, &a_data, &mut c);
        }
        c
    }

    fn randn(rng: &mut Rng, dims: &[usize]) -> Tensor {
        rng.normal(dims.to_vec(), 0.0, 1.0, DType::F64, &Device::Cpu).unwrap()
    }

    fn assert_close(got: &[f64], want: &[f64], what: &str) {
        assert_eq!(got.len(), want.len(), "{what}");
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            assert!((g - w).abs() < 1e-12, "{what}[{i}]: {g} vs {w}");
        }
    }

    #[test]
    fn forward_problems_compute_the_cpu_grouped_matmul() {
        let mut rng = Rng::seed(3);
        let counts = [3usize, 0, 4, 1];
        let (m, d, f) = (8, 5, 6);
        let (x, xt, h) = (
            randn(&mut rng, &[m, d]),
            randn(&mut rng, &[d, m]),
            randn(&mut rng, &[m, 2 * d]),
        );
        let (w, w_efd) = (randn(&mut rng, &[4, d, f]), randn(&mut rng, &[4, f, d]));
        // x contiguous, as a transposed view, as a narrowed half; w [E, D, F]
        // and the HF stack [E, F, D] as its transpose.
        let xs = [(x.clone(), x), (xt.t().unwrap(), xt), (h.narrow(1, d, d).unwrap(), h)];
        let ws = [(w.clone(), w), (w_efd.transpose(1, 2).unwrap(), w_efd)];
        for (xv, xb) in &xs {
            for (wv, wb) in &ws {
                let make = |a: Place<'_>, b: Place<'_>| forward_problems(&counts, (d, f), a, b);
                let got = run_on_host(make, (xv, xb), (wv, wb), m * f);
                let want = xv.grouped_matmul(wv, &counts).unwrap().to_vec_f64().unwrap();
                assert_close(&got, &want, &format!("x {:?} w {:?}", xv.layout(), wv.layout()));
            }
        }
    }

    #[test]
    fn weight_grad_problems_compute_each_segments_product() {
        let mut rng = Rng::seed(4);
        let counts = [2usize, 0, 3];
        let (m, p, q) = (5, 4, 6);
        let (a, at, b) = (
            randn(&mut rng, &[m, p]),
            randn(&mut rng, &[p, m]),
            randn(&mut rng, &[m, q]),
        );
        for (av, ab) in [(a.clone(), a), (at.t().unwrap(), at)] {
            let make = |x: Place<'_>, y: Place<'_>| weight_grad_problems(&counts, (p, q), x, y);
            let got = run_on_host(make, (&av, &ab), (&b, &b), counts.len() * p * q);
            let mut want = Vec::new();
            for (_, first, c) in segments(&counts) {
                if c == 0 {
                    want.extend(vec![0.0; p * q]);
                } else {
                    let (a_e, b_e) = (av.narrow(0, first, c).unwrap(), b.narrow(0, first, c).unwrap());
                    want.extend(a_e.t().unwrap().matmul(&b_e).unwrap().to_vec_f64().unwrap());
                }
            }
            assert_close(&got, &want, &format!("a {:?}", av.layout()));
        }
    }

    #[test]
    fn unreadable_layouts_are_found_before_the_call() {
        // Broadcast rows (row stride 0) cannot be a cuBLAS operand: plan()
        // copies such a source to row-major.
        let x = Tensor::zeros((1, 5), DType::F64, &Device::Cpu)
            .unwrap()
            .broadcast_as((8, 5))
            .unwrap();
        let w = Tensor::zeros((2, 5, 3), DType::F64, &Device::Cpu).unwrap();
        let (lx, lw) = (x.layout(), w.layout());
        let problems = forward_problems(
            &[6, 2],
            (5, 3),
            (lx.offset(), lx.strides()),
            (lw.offset(), lw.strides()),
        );
        assert_eq!(problems.len(), 2);
        assert!(problems.iter().all(|p| p.a.plan().is_none() && p.b.plan().is_some()));
    }
}
