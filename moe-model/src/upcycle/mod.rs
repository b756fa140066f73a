//! Upcycling: an MoE model initialised from a dense checkpoint.
//!
//! Everything but the FFNs (embeddings, attention, norms, LM head) is copied
//! from the dense model; each MoE layer's routed experts start from that
//! layer's dense FFN (`gate_proj`/`up_proj [F, D]`, `down_proj [D, F]`) and its
//! router starts random, Normal(0, [`UpcycleOptions::router_init_std`]) (0.02,
//! Drop-Upcycling's setting). Layers the target keeps dense
//! (`moe.first_dense_layers`) copy the dense FFN. Three methods:
//!
//! - [`UpcycleMethod::Naive`] (sparse upcycling): every expert is an exact copy
//!   of the dense FFN. With weights that sum to 1 per token (renormalised
//!   top-k, Mixtral's rule, or k = E) the MoE computes exactly the dense
//!   function at initialisation, whatever the router says.
//! - [`UpcycleMethod::Drop`] (Drop-Upcycling, Nakamura et al., ICLR 2025): as
//!   naive, then per expert a random set of ⌊r·F⌋ intermediate indices (F the
//!   dense FFN width, ⌊r·F⌋ computed in f64 as the reference code's
//!   `int(F * r)`) is re-initialised: those rows of `gate_proj` and `up_proj`
//!   and those columns of `down_proj`. See [`drop`](mod@drop) for the index sets (one
//!   per expert by default, the paper's text; one per matrix with
//!   `per_matrix`, the reference implementation) and the statistics.
//! - [`UpcycleMethod::Granular`] (Megatron-Core's granular upcycling, He et
//!   al. 2024, arXiv 2410.07524): for experts g times narrower than the dense
//!   FFN, the intermediate dimension is cut into slices, experts are slices of
//!   virtual copies of the FFN and outputs are rescaled; see [`granular`] for
//!   the construction and exactly when it reproduces the dense output.
//!
//! [`output_match`] says, for a target config and method, whether the
//! upcycled model's output equals the dense model's at initialisation (up to
//! float rounding) and if not, why.
//!
//! Upcycling works on host copies of the parameters: the source must live on
//! the CPU; the result is a fresh f32 model sharing no storage with the source.
//! Every mismatch between source and target is an [`Error::Upcycle`] naming the
//! field (see [`check()`]).

pub mod check;
pub mod drop;
pub mod granular;
pub mod naive;
pub mod target;

pub use check::check;
pub use granular::SharedInit;
pub use target::target_config;

use crate::hf::names::{layer_prefix, param_specs};
use crate::{Decoder, Error, ModelConfig, Result};
use moe_router::{Capacity, RouterConfig, RouterKind, ScoreFn};
use moe_tensor::init::Rng;
use moe_tensor::{DType, Params, Tensor};
use std::collections::HashMap;

/// How the experts are built from the dense FFN.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum UpcycleMethod {
    /// Every expert a copy of the dense FFN.
    Naive,
    /// Drop-Upcycling: copies with a share `ratio` ∈ [0, 1] of the intermediate
    /// indices re-initialised per expert (0.5 is the paper's default; 0 is
    /// naive upcycling; 1 re-initialises everything with matched statistics).
    Drop {
        /// Share r of the intermediate dimension re-initialised per expert.
        ratio: f64,
        /// One random index set per matrix (the reference code) instead of one
        /// per expert shared by gate, up and down (the paper's text, default).
        per_matrix: bool,
    },
    /// Megatron-Core granular upcycling: experts are slices of the dense FFN.
    Granular,
}

/// Knobs shared by every method.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct UpcycleOptions {
    /// Std of the zero-mean normal the router weights are drawn from (≥ 0;
    /// 0 gives a uniform router).
    pub router_init_std: f64,
    /// Seed of every random draw (router, index sets, re-initialised values).
    pub seed: u64,
    /// Where a granular target's shared expert comes from.
    pub shared_init: SharedInit,
}

impl Default for UpcycleOptions {
    fn default() -> Self {
        UpcycleOptions {
            router_init_std: 0.02,
            seed: 0,
            shared_init: SharedInit::Slice,
        }
    }
}

/// Whether the upcycled model reproduces the dense model at initialisation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OutputMatch {
    /// Same logits as the dense model up to float rounding, for every input.
    Exact,
    /// Not (or not guaranteed) the dense function, and why.
    No {
        /// What breaks the equality.
        reason: String,
    },
}

/// One dense gated FFN on the host: `gate` and `up` `[F, D]`, `down` `[D, F]`,
/// row-major f32.
#[derive(Clone, Debug, PartialEq)]
pub struct HostFfn {
    /// Intermediate width F.
    pub f: usize,
    /// Model width D.
    pub d: usize,
    /// `[F, D]`.
    pub gate: Vec<f32>,
    /// `[F, D]`.
    pub up: Vec<f32>,
    /// `[D, F]`.
    pub down: Vec<f32>,
}

impl HostFfn {
    /// Intermediate indices `start..start + width` (rows of gate/up, columns of down).
    pub fn slice(&self, start: usize, width: usize) -> HostFfn {
        let (d, f) = (self.d, self.f);
        let rows = |m: &[f32]| m[start * d..(start + width) * d].to_vec();
        let down = (0..d)
            .flat_map(|i| self.down[i * f + start..i * f + start + width].iter().copied())
            .collect();
        HostFfn {
            f: width,
            d,
            gate: rows(&self.gate),
            up: rows(&self.up),
            down,
        }
    }

    /// Multiplies `down` (hence the FFN's output) by `s`.
    pub fn scale_output(&mut self, s: f32) {
        if s != 1.0 {
            self.down.iter_mut().for_each(|v| *v *= s);
        }
    }
}

/// One MoE layer's new parameters on the host.
#[derive(Clone, Debug)]
pub(crate) struct MoeLayer {
    /// `[E, D]`.
    pub router: Vec<f32>,
    /// The routed experts, each of width `moe.expert_intermediate_size`.
    pub experts: Vec<HostFfn>,
    /// The shared expert.
    pub shared: Option<HostFfn>,
    /// `[1, D]`: the shared expert's sigmoid gate.
    pub shared_gate: Option<Vec<f32>>,
}

/// `n` samples of Normal(0, std) (all zeros for std = 0).
pub(crate) fn normal_vec(rng: &mut Rng, n: usize, std: f64) -> Vec<f32> {
    if std == 0.0 {
        return vec![0.0; n];
    }
    (0..n).map(|_| (std * rng.next_normal()) as f32).collect()
}

fn host(params: &Params, name: &str) -> Result<Vec<f32>> {
    let t = params.get(name).ok_or_else(|| Error::MissingTensor {
        path: "<dense source>".into(),
        name: name.into(),
    })?;
    Ok(t.to_dtype(DType::F32)?.to_vec::<f32>()?)
}

/// The dense FFN of layer `layer` of `dense`.
pub fn dense_ffn(dense: &Decoder, layer: usize) -> Result<HostFfn> {
    let cfg = dense.config();
    let p = format!("{}.mlp", layer_prefix(layer));
    Ok(HostFfn {
        f: cfg.intermediate_size,
        d: cfg.hidden_size,
        gate: host(dense.params(), &format!("{p}.gate_proj.weight"))?,
        up: host(dense.params(), &format!("{p}.up_proj.weight"))?,
        down: host(dense.params(), &format!("{p}.down_proj.weight"))?,
    })
}

/// How the combine weights of the k chosen experts behave at initialisation:
/// `(constant, uniform)`: `constant` is `Some(c)` when they sum to `c` for
/// every token whatever the logits (renormalised top-k, or k = E with softmax
/// scores), and `uniform` is their sum when all logits are equal.
pub(crate) fn weight_sums(r: &RouterConfig) -> (Option<f64>, f64) {
    let (e, k) = (r.num_experts as f64, r.top_k as f64);
    let (score, renorm, sf) = match r.kind {
        RouterKind::SoftmaxTopK(w) => (ScoreFn::Softmax, w.renormalize, w.scaling_factor),
        // Sinkhorn weights are sigmoid(logit) for k = 1, softmax otherwise.
        RouterKind::Sinkhorn(_) if r.top_k == 1 => (ScoreFn::Sigmoid, false, 1.0),
        RouterKind::Sinkhorn(_) => (ScoreFn::Softmax, false, 1.0),
        RouterKind::AuxFree(a) => (a.score, a.weights.renormalize, a.weights.scaling_factor),
    };
    if renorm {
        return (Some(sf), sf);
    }
    match score {
        ScoreFn::Softmax if r.top_k == r.num_experts => (Some(sf), sf),
        ScoreFn::Softmax => (None, sf * k / e),
        ScoreFn::Sigmoid => (None, sf * k * 0.5),
    }
}

/// Whether upcycling `target` with `method` reproduces the dense model's
/// output at initialisation (see the module docs and [`granular`]).
pub fn output_match(target: &ModelConfig, method: &UpcycleMethod, opts: &UpcycleOptions) -> OutputMatch {
    let no = |reason: String| OutputMatch::No { reason };
    let Some(m) = &target.moe else {
        return no("the target config has no moe section".into());
    };
    if m.router.capacity != Capacity::Dropless {
        return no("a capacity factor drops token copies, which the dense model never does".into());
    }
    let (constant, _) = weight_sums(&m.router);
    match method {
        UpcycleMethod::Drop { ratio, .. } if *ratio > 0.0 => no(format!(
            "Drop-Upcycling re-initialises a share {ratio} of every expert on purpose"
        )),
        UpcycleMethod::Naive | UpcycleMethod::Drop { .. } => match constant {
            Some(1.0) => OutputMatch::Exact,
            Some(c) => no(format!("the routed weights sum to {c}, not 1")),
            None => no(
                "the routed weights depend on the router (neither renormalised top-k nor k = E), \
                 so the copies are summed with weights that do not add up to 1"
                    .into(),
            ),
        },
        UpcycleMethod::Granular => granular::output_match(target, opts),
    }
}

/// Upcycles the dense model `dense` into a model of config `target` (an MoE
/// whose non-FFN shapes equal the source's) with `method`.
pub fn upcycle(
    dense: &Decoder,
    target: &ModelConfig,
    method: &UpcycleMethod,
    opts: &UpcycleOptions,
) -> Result<Decoder> {
    check(dense.config(), target, method, opts)?;
    let Some(m) = &target.moe else {
        return Err(Error::Upcycle {
            field: "moe".into(),
            msg: "the target config has no moe section".into(),
        });
    };
    let mut rng = Rng::seed(opts.seed);
    let device = dense
        .params()
        .iter()
        .next()
        .map(|(_, t)| t.device())
        .unwrap_or_default();
    if !device.is_cpu() {
        return Err(Error::Upcycle {
            field: "device".into(),
            msg: format!("upcycling reads the dense weights on the host; load the source on the CPU, not {device:?}"),
        });
    }
    // New tensors by name; everything else is copied from the source.
    let mut fresh: HashMap<String, Vec<f32>> = HashMap::new();
    for layer in 0..target.num_layers {
        if !target.is_moe_layer(layer) {
            continue;
        }
        let ffn = dense_ffn(dense, layer)?;
        let built = match method {
            UpcycleMethod::Naive => naive::layer(&ffn, m, opts, &mut rng),
            UpcycleMethod::Drop { ratio, per_matrix } => drop::layer(&ffn, m, *ratio, *per_matrix, opts, &mut rng),
            UpcycleMethod::Granular => granular::layer(&ffn, m, opts, &mut rng)?,
        };
        insert_layer(&mut fresh, layer, built);
    }
    let mut params = Params::new();
    for spec in param_specs(target) {
        let data = match fresh.remove(&spec.name) {
            Some(v) => v,
            None => host(dense.params(), &spec.name)?,
        };
        let t = Tensor::from_vec(data, spec.shape.clone(), &device)?;
        params.insert(spec.name, &t)?;
    }
    Decoder::from_params(target, params)
}

/// Files one layer's tensors under their parameter names.
fn insert_layer(fresh: &mut HashMap<String, Vec<f32>>, layer: usize, l: MoeLayer) {
    let p = format!("{}.mlp", layer_prefix(layer));
    let mut gate_up = Vec::new();
    let mut down = Vec::new();
    for e in &l.experts {
        gate_up.extend_from_slice(&e.gate); // [F, D] gate rows first,
        gate_up.extend_from_slice(&e.up); //   then [F, D] up rows
        down.extend_from_slice(&e.down); // [D, F]
    }
    fresh.insert(format!("{p}.gate.weight"), l.router);
    fresh.insert(format!("{p}.experts.gate_up_proj"), gate_up);
    fresh.insert(format!("{p}.experts.down_proj"), down);
    if let Some(s) = l.shared {
        fresh.insert(format!("{p}.shared_expert.gate_proj.weight"), s.gate);
        fresh.insert(format!("{p}.shared_expert.up_proj.weight"), s.up);
        fresh.insert(format!("{p}.shared_expert.down_proj.weight"), s.down);
    }
    if let Some(g) = l.shared_gate {
        fresh.insert(format!("{p}.shared_expert_gate.weight"), g);
    }
}
