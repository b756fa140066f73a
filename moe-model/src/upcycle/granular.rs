//! Granular upcycling (Megatron-Core, He et al. 2024, arXiv 2410.07524):
//! experts narrower than the dense FFN are slices of it.
//!
//! Construction, for a dense FFN of width F and routed experts of width f:
//!
//! 1. The shared expert (if the target has one, width S) is taken per
//!    [`SharedInit`]: by default the first S intermediate indices of the dense
//!    FFN, and the routed slices cover the remaining F − S, which must be a
//!    multiple of f (the paper's FLOP-matched granular model: F = 2816, one
//!    shared and three routed slices of 704). With [`SharedInit::WholeFfn`]
//!    the shared expert is the whole dense FFN (S = F) with its output halved,
//!    the routed slices cover all of F and their outputs are halved too.
//! 2. The routed region is cut into r slices of width f. Routed expert i is
//!    slice `i mod r` of virtual copy `i div r` of the FFN; all r experts of a
//!    copy share one router row (drawn Normal(0, `router_init_std`), one row
//!    per copy), so they get equal logits and top-k picks whole copies when k
//!    is a multiple of r.
//! 3. Each routed expert's output (`down_proj`) is multiplied by
//!    `s = r / W`, where W is the sum of the k combine weights when all
//!    logits are equal: 1 for renormalised top-k (Mixtral, Qwen2-MoE with
//!    `norm_topk_prob`), k/E for plain softmax top-k, times the router's
//!    scaling factor. A chosen copy c then contributes `(w_c·r)·(s/r)·Σ_j
//!    slice_j(x)`; summed over the m = k/r chosen copies this is the routed
//!    part of the dense FFN exactly when the copies' weights `w_c·r` sum to W.
//! 4. A gated shared expert (Qwen2-MoE's `sigmoid(x·w)`) starts with w = 0, so
//!    the gate is exactly ½, and its `down_proj` is doubled.
//!
//! When the output equals the dense output at initialisation (up to float
//! rounding; [`super::output_match`] reports it), with dropless routing and k
//! a multiple of r:
//! - renormalised top-k (weights summing to a constant for every token):
//!   always, if E is a multiple of r (every copy complete); with an
//!   incomplete last copy only when the router starts uniform;
//! - otherwise (plain softmax top-k, whose weights depend on the logits):
//!   only when the router starts uniform (`router_init_std = 0`): every
//!   weight is then 1/E, ties go to the lower expert index, so the first m
//!   (complete) copies are chosen and the rescaling is exact. With a random
//!   router the weights move away from 1/E and tokens may pick an incomplete
//!   copy, so the output drifts from the dense one: in the tests, the paper's
//!   7-routed top-3 layout with std 0.02 on a 32-wide model moves logits by
//!   ~0.8, against ~5e-7 with a uniform router.

use super::{normal_vec, weight_sums, HostFfn, MoeLayer, OutputMatch, UpcycleOptions};
use crate::{Error, ModelConfig, MoeConfig, Result};
use moe_tensor::init::Rng;

/// Where a granular target's shared expert comes from (unused without one).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SharedInit {
    /// The first S = `shared_intermediate_size` intermediate indices of the
    /// dense FFN; the routed experts slice the other F − S (default; keeps the
    /// shared + routed FFN equal to the dense FFN, FLOP-matched).
    #[default]
    Slice,
    /// The whole dense FFN (S must equal F) with its output halved; the routed
    /// experts slice the whole FFN and their output is halved as well.
    WholeFfn,
}

/// Which slices go where, and the output scales.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    /// First intermediate index of each of the r routed slices.
    pub slices: Vec<usize>,
    /// Width f of a routed slice.
    pub width: usize,
    /// Output scale of every routed expert.
    pub routed_scale: f64,
    /// The shared expert: first index, width and output scale.
    pub shared: Option<(usize, usize, f64)>,
}

fn bad(field: &str, msg: String) -> Error {
    Error::Upcycle {
        field: field.into(),
        msg,
    }
}

/// The slicing of a dense FFN of width `dense_f` for the MoE section `m`.
pub fn plan(dense_f: usize, m: &MoeConfig, shared_init: SharedInit) -> Result<Plan> {
    let (f, s) = (m.expert_intermediate_size, m.shared_intermediate_size);
    let whole = s > 0 && shared_init == SharedInit::WholeFfn;
    let start = if s > 0 && !whole { s } else { 0 };
    if s > 0 && whole && s != dense_f {
        return Err(bad(
            "moe.shared_intermediate_size",
            format!("{s}: a shared expert made of the whole dense FFN must have its width F = {dense_f}"),
        ));
    }
    if s > 0 && !whole && s >= dense_f {
        return Err(bad(
            "moe.shared_intermediate_size",
            format!("{s} leaves none of the dense FFN's {dense_f} intermediate indices to the routed experts"),
        ));
    }
    let routed = dense_f - start;
    if f == 0 || !routed.is_multiple_of(f) {
        return Err(bad(
            "moe.expert_intermediate_size",
            format!(
                "{f} must divide the {routed} intermediate indices the routed experts slice \
                 (dense FFN width {dense_f}, shared expert {start})"
            ),
        ));
    }
    let r = routed / f;
    let (_, uniform) = weight_sums(&m.router);
    let halve = if whole { 0.5 } else { 1.0 };
    let gate = if m.shared_expert_gate { 2.0 } else { 1.0 };
    Ok(Plan {
        slices: (0..r).map(|j| start + j * f).collect(),
        width: f,
        routed_scale: r as f64 / uniform * halve,
        shared: (s > 0).then_some((0, s, halve * gate)),
    })
}

/// Whether granular upcycling into `target` reproduces the dense output.
pub(crate) fn output_match(target: &ModelConfig, opts: &UpcycleOptions) -> OutputMatch {
    let no = |reason: String| OutputMatch::No { reason };
    let Some(m) = &target.moe else {
        return no("the target config has no moe section".into());
    };
    let p = match plan(target.intermediate_size, m, opts.shared_init) {
        Ok(p) => p,
        Err(e) => return no(e.to_string()),
    };
    let (r, k, e) = (p.slices.len(), m.top_k(), m.num_experts());
    if k % r != 0 {
        return no(format!(
            "top_k = {k} is not a multiple of the {r} routed slices per copy of the FFN, so the chosen experts \
             never form whole copies"
        ));
    }
    let uniform_router = opts.router_init_std == 0.0;
    if k > r * (e / r) {
        return no(format!(
            "top_k = {k} needs more whole copies than the {} complete ones",
            e / r
        ));
    }
    match weight_sums(&m.router).0 {
        Some(_) if e % r == 0 || uniform_router => OutputMatch::Exact,
        Some(_) => no(format!(
            "num_experts = {e} is not a multiple of r = {r}: the last copy is incomplete, and a token whose \
             best copy it is gets part of the FFN (exact only with router_init_std = 0)"
        )),
        None if uniform_router => OutputMatch::Exact,
        None => no(
            "the combine weights depend on the router (no renormalisation); the rescaling assumes a uniform \
             router, so the dense output is reproduced only with router_init_std = 0"
                .into(),
        ),
    }
}

/// One MoE layer (see the module docs); the router (one row per copy) is
/// the only random draw.
pub(crate) fn layer(ffn: &HostFfn, m: &MoeConfig, opts: &UpcycleOptions, rng: &mut Rng) -> Result<MoeLayer> {
    let p = plan(ffn.f, m, opts.shared_init)?;
    let (r, d, e) = (p.slices.len(), ffn.d, m.num_experts());
    let copies = e.div_ceil(r);
    let rows = normal_vec(rng, copies * d, opts.router_init_std);
    let router = (0..e)
        .flat_map(|i| rows[(i / r) * d..(i / r + 1) * d].iter().copied())
        .collect();
    let experts = (0..e)
        .map(|i| {
            let mut x = ffn.slice(p.slices[i % r], p.width);
            x.scale_output(p.routed_scale as f32);
            x
        })
        .collect();
    let shared = p.shared.map(|(start, width, scale)| {
        let mut x = ffn.slice(start, width);
        x.scale_output(scale as f32);
        x
    });
    Ok(MoeLayer {
        router,
        experts,
        shared,
        shared_gate: m.shared_expert_gate.then(|| vec![0.0; d]),
    })
}
