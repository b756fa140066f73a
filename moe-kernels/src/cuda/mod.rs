//! CUDA kernel sources and the host-side logic that needs no GPU.
//!
//! The kernels are `.cu` files beside this module, embedded with
//! `include_str!`; the CUDA backend of moe-tensor compiles each
//! [`KernelSource`] with NVRTC the first time a device needs it and caches the
//! module per device. Every source is compiled with [`COMMON`] in front of it
//! ([`KernelSource::full_source`]), so no source includes a header and NVRTC
//! needs no toolkit headers.
//!
//! Nothing here links to CUDA: the sources, the op codes shared with them
//! ([`ops`]), launch configuration arithmetic ([`launch`]) and the caching
//! allocator's bucket pool ([`pool`]) are plain Rust, built and unit-tested
//! on every machine. None of the kernels has run on a GPU yet (see the
//! crate README).

pub mod attention_launch;
pub mod attention_tc_launch;
pub mod gemm_plan;
pub mod launch;
pub mod ops;
pub mod pool;
mod strided_arg;

pub use strided_arg::{StridedArg, MAX_RANK};

/// Definitions every kernel source is compiled with (types, strided
/// indexing, bf16 conversion, block reductions).
pub const COMMON: &str = include_str!("common.cuh");

/// One `.cu` file: its name, text and the `extern "C"` kernels it defines.
#[derive(Clone, Copy, Debug)]
pub struct KernelSource {
    /// Module name (the file stem); the key of the per-device module cache.
    pub name: &'static str,
    /// The source text, without [`COMMON`].
    pub source: &'static str,
    /// Names of the `extern "C" __global__` functions it defines.
    pub functions: &'static [&'static str],
}

impl KernelSource {
    /// The text NVRTC compiles: [`COMMON`] followed by the source.
    pub fn full_source(&self) -> String {
        let mut s = String::with_capacity(COMMON.len() + self.source.len() + 1);
        s.push_str(COMMON);
        s.push('\n');
        s.push_str(self.source);
        s
    }
}

/// Layout copies, dtype casts, fills.
pub const STRIDED: KernelSource = KernelSource {
    name: "strided",
    source: include_str!("strided.cu"),
    functions: &[
        "copy_strided_b1",
        "copy_strided_b2",
        "copy_strided_b4",
        "copy_strided_b8",
        "scatter_strided_b1",
        "scatter_strided_b2",
        "scatter_strided_b4",
        "scatter_strided_b8",
        "where_b1",
        "where_b2",
        "where_b4",
        "where_b8",
        "cast_f32_bf16",
        "cast_bf16_f32",
        "cast_f64_f32",
        "cast_f32_f64",
        "cast_i64_f32",
        "cast_u8_f32",
        "cast_i64_f64",
        "cast_u8_f64",
        "fill_f32",
    ],
};

/// Unary (forward and backward), broadcasting binary ops and comparisons,
/// and gated activations `act(gate) · up` (separate or packed), forward and
/// backward; f32 and f64.
pub const ELEMENTWISE: KernelSource = KernelSource {
    name: "elementwise",
    source: include_str!("elementwise.cu"),
    functions: &[
        "unary_fwd_f32",
        "unary_fwd_f64",
        "unary_bwd_f32",
        "unary_bwd_f64",
        "binary_f32",
        "binary_f64",
        "compare_f32",
        "compare_f64",
        "gated_fwd_f32",
        "gated_fwd_f64",
        "gated_bwd_f32",
        "gated_bwd_f64",
        "gated_packed_fwd_f32",
        "gated_packed_fwd_f64",
        "gated_packed_bwd_f32",
        "gated_packed_bwd_f64",
    ],
};

/// Row sums over the last dim; max with its position over one dim of any
/// view (f32, f64).
pub const REDUCE: KernelSource = KernelSource {
    name: "reduce",
    source: include_str!("reduce.cu"),
    functions: &["sum_rows_f32", "sum_rows_f64", "max_dim_f32", "max_dim_f64"],
};

/// Cumulative sums along one dim of any view, forward and reverse (f32, f64,
/// i64, u8 into i64), in the CPU's order.
pub const SCAN: KernelSource = KernelSource {
    name: "scan",
    source: include_str!("scan.cu"),
    functions: &["cumsum_f32", "cumsum_f64", "cumsum_i64", "cumsum_u8_i64"],
};

/// Softmax and log-softmax, forward and backward.
pub const SOFTMAX: KernelSource = KernelSource {
    name: "softmax",
    source: include_str!("softmax.cu"),
    functions: &["softmax_fwd_f32", "softmax_bwd_f32"],
};

/// RMSNorm forward and backward (dx, dw).
pub const RMS_NORM: KernelSource = KernelSource {
    name: "rms_norm",
    source: include_str!("rms_norm.cu"),
    functions: &["rms_norm_fwd_f32", "rms_norm_bwd_dx_f32", "rms_norm_bwd_dw_f32"],
};

/// Rotary embeddings (rotate_half), forward and backward in one kernel.
pub const ROPE: KernelSource = KernelSource {
    name: "rope",
    source: include_str!("rope.cu"),
    functions: &["rope_f32"],
};

/// Fused softmax cross-entropy, forward, reduction and backward.
pub const CROSS_ENTROPY: KernelSource = KernelSource {
    name: "cross_entropy",
    source: include_str!("cross_entropy.cu"),
    functions: &["ce_fwd_rows_f32", "ce_reduce_f32", "ce_bwd_f32"],
};

/// Embedding gather and its scatter-add backward.
pub const EMBEDDING: KernelSource = KernelSource {
    name: "embedding",
    source: include_str!("embedding.cu"),
    functions: &["embedding_fwd_f32", "embedding_bwd_f32"],
};

/// index_select and gather along a dim (any dtype, by element size) and
/// their deterministic backward, index_add (f32, f64) and scatter-add (f32,
/// f64, i64, u8).
pub const SELECT: KernelSource = KernelSource {
    name: "select",
    source: include_str!("select.cu"),
    functions: &[
        "index_select_b1",
        "index_select_b2",
        "index_select_b4",
        "index_select_b8",
        "gather_b1",
        "gather_b2",
        "gather_b4",
        "gather_b8",
        "index_add_f32",
        "index_add_f64",
        "scatter_add_f32",
        "scatter_add_f64",
        "scatter_add_i64",
        "scatter_add_u8",
    ],
};

/// The weighted combine of MoE expert rows into tokens, forward and
/// backward (rows and weights), f32 and f64.
pub const COMBINE: KernelSource = KernelSource {
    name: "combine",
    source: include_str!("combine.cu"),
    functions: &[
        "combine_fwd_f32",
        "combine_fwd_f64",
        "combine_bwd_rows_f32",
        "combine_bwd_rows_f64",
        "combine_bwd_rows_planned_f32",
        "combine_bwd_rows_planned_f64",
        "combine_bwd_weights_f32",
        "combine_bwd_weights_f64",
    ],
};

/// Top-k along rows (routing) and its backward.
pub const TOPK: KernelSource = KernelSource {
    name: "topk",
    source: include_str!("topk.cu"),
    functions: &["topk_rows_f32", "topk_bwd_f32"],
};

/// Causal grouped-query attention, flash-attention style: forward (output
/// and logsumexp), the backward's row statistic `delta`, dq, and dk/dv; f32
/// and f64, one variant per head-size class ([`attention_launch`]).
pub const ATTENTION: KernelSource = KernelSource {
    name: "attention",
    source: include_str!("attention.cu"),
    functions: &[
        "attn_fwd_f32_d64",
        "attn_fwd_f32_d128",
        "attn_fwd_f32_d256",
        "attn_fwd_f64_d64",
        "attn_fwd_f64_d128",
        "attn_fwd_f64_d256",
        "attn_delta_f32",
        "attn_delta_f64",
        "attn_bwd_dq_f32_d64",
        "attn_bwd_dq_f32_d128",
        "attn_bwd_dq_f32_d256",
        "attn_bwd_dq_f64_d64",
        "attn_bwd_dq_f64_d128",
        "attn_bwd_dq_f64_d256",
        "attn_bwd_dkv_f32_d64",
        "attn_bwd_dkv_f32_d128",
        "attn_bwd_dkv_f32_d256",
        "attn_bwd_dkv_f64_d64",
        "attn_bwd_dkv_f64_d128",
        "attn_bwd_dkv_f64_d256",
    ],
};

/// The optimiser step: AdamW's in-place update (the CPU's arithmetic, bit
/// for bit) and the deterministic f64 sum of squares of global-norm clipping.
pub const OPTIM: KernelSource = KernelSource {
    name: "optim",
    source: include_str!("optim.cu"),
    functions: &[
        "adamw_f32",
        "sum_sq_chunks_f32",
        "sum_sq_chunks_f64",
        "sum_partials_f64",
    ],
};

/// Causal grouped-query attention for f32 tensors on bf16 tensor cores
/// (`mma.m16n8k16`, sm_80+): forward, dq and dk/dv for head sizes 64 and 128
/// ([`attention_tc_launch`]); `delta` comes from [`ATTENTION`].
pub const ATTENTION_TC: KernelSource = KernelSource {
    name: "attention_tc",
    source: concat!(include_str!("tensor_core.cuh"), include_str!("attention_tc.cu")),
    functions: &[
        "attn_tc_fwd_d64",
        "attn_tc_fwd_d128",
        "attn_tc_bwd_dq_d64",
        "attn_tc_bwd_dq_d128",
        "attn_tc_bwd_dkv_d64",
        "attn_tc_bwd_dkv_d128",
    ],
};

/// The MoE dispatch plan on the device: a stable counting sort of the token
/// copies by expert (segment sizes, offsets, rows), so routing needs no host
/// round-trip ([`launch::route_plan`]).
pub const ROUTE_PLAN: KernelSource = KernelSource {
    name: "route_plan",
    source: include_str!("route_plan.cu"),
    functions: &[
        "route_plan_rank",
        "route_plan_place",
        "route_keep_by_score_f32",
        "route_keep_by_score_f64",
    ],
};

/// The expert GEMMs over segments whose offsets live on the device (forward
/// and input gradient; weight gradient): SIMT f32 (optionally bf16
/// operands) and f64, and bf16 tensor cores for f32 under bf16 precision on
/// sm_80+ ([`launch::grouped_seg_fwd`], [`launch::grouped_seg_wgrad`]).
pub const GROUPED_SEG: KernelSource = KernelSource {
    name: "grouped_seg",
    source: concat!(include_str!("tensor_core.cuh"), include_str!("grouped_seg.cu")),
    functions: &[
        "grouped_seg_fwd_f32",
        "grouped_seg_fwd_f64",
        "grouped_seg_wgrad_f32",
        "grouped_seg_wgrad_f64",
        "grouped_seg_tc_fwd",
        "grouped_seg_tc_wgrad",
    ],
};

/// Sinkhorn balancing of router logits in one block, iterations and
/// convergence test on the device ([`launch::sinkhorn`]; the arithmetic of
/// [`crate::cpu::sinkhorn`]).
pub const SINKHORN: KernelSource = KernelSource {
    name: "sinkhorn",
    source: include_str!("sinkhorn.cu"),
    functions: &["sinkhorn_f32", "sinkhorn_f64"],
};

/// Every kernel source, for the module cache and the tests.
pub const ALL: &[KernelSource] = &[
    STRIDED,
    ELEMENTWISE,
    REDUCE,
    SCAN,
    SOFTMAX,
    RMS_NORM,
    ROPE,
    CROSS_ENTROPY,
    EMBEDDING,
    TOPK,
    SELECT,
    COMBINE,
    ATTENTION,
    OPTIM,
    ATTENTION_TC,
    ROUTE_PLAN,
    GROUPED_SEG,
    SINKHORN,
];

#[cfg(test)]
mod tests;
