//! Reduced-precision matrix products for f32 tensors (mixed precision).
//!
//! With [`MatmulPrecision::Bf16`], the f32 matrix products of `matmul` and
//! `grouped_matmul` (forward and the backward's products) read their operands
//! rounded to bf16 (round to nearest even) and accumulate in f32; tensors,
//! parameters, gradients and every other op stay f32. This is PyTorch's
//! `torch.set_float32_matmul_precision("medium")`: on CUDA the products run
//! on bf16 tensor cores (cuBLAS `CUBLAS_COMPUTE_32F_FAST_16BF`); on the CPU
//! the GEMM kernels read the operands rounded to bf16
//! (`moe_kernels::cpu::gemm::ProductPrecision::Bf16`: a bf16 pair kernel at
//! twice the f32 rate on CPUs with AVX512-BF16, rounded copies elsewhere), so
//! CPU runs reproduce the GPU's arithmetic (up to the order of the f32 sums)
//! and tests can check mixed precision without a GPU.
//!
//! The setting is per thread (the thread that runs forward and backward),
//! so tests and callers in other threads are unaffected.

use moe_kernels::cpu::gemm::ProductPrecision;
use std::cell::Cell;

/// How f32 matrix products compute.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MatmulPrecision {
    /// Full f32 operands (the default).
    #[default]
    Highest,
    /// Operands rounded to bf16, f32 accumulation and output.
    Bf16,
}

thread_local! {
    static MATMUL_PRECISION: Cell<MatmulPrecision> = const { Cell::new(MatmulPrecision::Highest) };
}

/// The calling thread's matmul precision.
pub fn matmul_precision() -> MatmulPrecision {
    MATMUL_PRECISION.with(Cell::get)
}

/// Sets the calling thread's matmul precision.
pub fn set_matmul_precision(p: MatmulPrecision) {
    MATMUL_PRECISION.with(|c| c.set(p));
}

/// Runs `f` with the matmul precision `p`, restoring the previous one after.
pub fn with_matmul_precision<R>(p: MatmulPrecision, f: impl FnOnce() -> R) -> R {
    struct Restore(MatmulPrecision);
    impl Drop for Restore {
        fn drop(&mut self) {
            set_matmul_precision(self.0);
        }
    }
    let _restore = Restore(matmul_precision());
    set_matmul_precision(p);
    f()
}

/// The kernels' reading of the calling thread's precision, for CPU products
/// (passed down explicitly: the kernels run on rayon's worker threads).
pub(crate) fn cpu_product_precision() -> ProductPrecision {
    match matmul_precision() {
        MatmulPrecision::Highest => ProductPrecision::Full,
        MatmulPrecision::Bf16 => ProductPrecision::Bf16,
    }
}

/// The CPU GEMM micro-kernel that f32 products use at the calling thread's
/// precision, e.g. `"avx512f f32 12x32"` or `"avx512-bf16 bf16x2 12x32"`
/// (for benchmark reports: which kernel a run's speed comes from).
pub fn cpu_matmul_kernel() -> &'static str {
    moe_kernels::cpu::gemm::selected_kernel::<f32>(cpu_product_precision())
}

/// Whether bf16 products on the CPU run on a bf16 kernel (AVX512-BF16):
/// without one, `MatmulPrecision::Bf16` is slower than f32 on the CPU.
pub fn cpu_bf16_native() -> bool {
    moe_kernels::cpu::gemm::bf16_kernel_available()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Device, Tensor};

    #[test]
    fn bf16_products_round_their_operands_and_accumulate_in_f32() {
        // 1 + 2^-10 is not a bf16 value (8 significant bits): it rounds to 1.
        let a = Tensor::from_vec(vec![1.0f32 + 1.0 / 1024.0, 3.0], (1, 2), &Device::Cpu).unwrap();
        let b = Tensor::from_vec(vec![1.0f32, 1.0 / 4096.0], (2, 1), &Device::Cpu).unwrap();
        let full = a.matmul(&b).unwrap().to_vec::<f32>().unwrap()[0];
        assert_eq!(full, 1.0 + 1.0 / 1024.0 + 3.0 / 4096.0);
        let low = with_matmul_precision(MatmulPrecision::Bf16, || {
            a.matmul(&b).unwrap().to_vec::<f32>().unwrap()[0]
        });
        // Rounded operands (1, 3, 1, 2^-12), exact products, f32 sum: the
        // small term survives, which a bf16 accumulator would have lost.
        assert_eq!(low, 1.0 + 3.0 / 4096.0);
        assert_eq!(matmul_precision(), MatmulPrecision::Highest, "restored");
    }

    #[test]
    fn other_dtypes_and_the_default_are_untouched() {
        let a = Tensor::from_vec(vec![1.0f64 + 1.0 / 1024.0], (1, 1), &Device::Cpu).unwrap();
        let low = with_matmul_precision(MatmulPrecision::Bf16, || {
            a.matmul(&a).unwrap().to_vec::<f64>().unwrap()[0]
        });
        assert_eq!(low, (1.0 + 1.0 / 1024.0) * (1.0 + 1.0 / 1024.0));
        let x = Tensor::from_vec(vec![1.0f32 + 1.0 / 1024.0], (1, 1), &Device::Cpu).unwrap();
        let full = x.matmul(&x).unwrap().to_vec::<f32>().unwrap()[0];
        assert_eq!(
            full,
            (1.0 + 1.0 / 1024.0) * (1.0 + 1.0 / 1024.0),
            "full precision by default"
        );
        assert_eq!(cpu_product_precision(), ProductPrecision::Full);
    }
}
