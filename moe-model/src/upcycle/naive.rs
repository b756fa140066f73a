//! Naive (sparse) upcycling: every routed expert is an exact copy of the dense
//! FFN, the router is Normal(0, `router_init_std`).

use super::{normal_vec, HostFfn, MoeLayer, UpcycleOptions};
use crate::MoeConfig;
use moe_tensor::init::Rng;

/// A random router `[E, D]`: one Normal(0, std) row per expert.
pub(crate) fn router(m: &MoeConfig, d: usize, std: f64, rng: &mut Rng) -> Vec<f32> {
    normal_vec(rng, m.num_experts() * d, std)
}

/// One MoE layer of E copies of `ffn`; the router is drawn first.
pub(crate) fn layer(ffn: &HostFfn, m: &MoeConfig, opts: &UpcycleOptions, rng: &mut Rng) -> MoeLayer {
    MoeLayer {
        router: router(m, ffn.d, opts.router_init_std, rng),
        experts: vec![ffn.clone(); m.num_experts()],
        shared: None,
        shared_gate: None,
    }
}
