//! moe-router: routers, balancing losses, capacity, dispatch and routing
//! statistics for Mixture-of-Experts layers, on moe-tensor.
//!
//! Dimension letters (used as suffixes in names: `logits_NE`, `topk_ids_NK`,
//! `tokens_per_expert_E`): N tokens of the micro-batch (batch × sequence,
//! flattened), D model width, E routed experts, K experts per token, F expert
//! width, M kept token copies (rows of the expert-sorted buffer; `N·K` when
//! dropless).
//!
//! One MoE layer's forward:
//!
//! ```
//! use moe_router::{RouteMode, Router, RouterConfig};
//! use moe_tensor::{init::Rng, DType, Device};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let (n, d, f, e) = (6, 4, 3, 4);
//! let dev = Device::Cpu;
//! let mut rng = Rng::seed(0);
//! let router = Router::init(RouterConfig::penalty_balanced(e, 2), d, 0.5, &mut rng, &dev)?;
//! let w_EDF = rng.normal((e, d, f), 0.0, 0.5, DType::F32, &dev)?.to_param();
//! let x_ND = rng.normal((n, d), 0.0, 1.0, DType::F32, &dev)?;
//!
//! let route = router.route(&x_ND, RouteMode::Train)?;
//! let x_MD = route.permute(&x_ND)?;                         // sorted by expert
//! let y_MF = x_MD.grouped_matmul(&w_EDF, route.segments())?;  // all experts, one op
//! let y_NF = route.combine(&y_MF)?;                         // weighted scatter back
//! let loss = y_NF.sqr()?.mean_all()?.add(&route.weighted_loss()?.unwrap())?;
//! loss.backward()?;
//! assert_eq!(router.weight().grad().unwrap().dims(), &[e, d]);
//! println!("MRI {:.3}, tokens per expert {:?}", route.stats()?.mri, route.stats()?.tokens_per_expert);
//! # Ok(())
//! # }
//! ```
//!
//! Files: `config` (routers, capacity, losses, presets), `router` (logits and
//! the routing pipeline), `topk` / `sinkhorn` / `expert_bias` (the three
//! selection rules), `capacity`, `dispatch`, `losses`, `stats`, `decision`.
#![allow(non_snake_case)] // shape suffixes: logits_NE, topk_ids_NK, ...

mod capacity;
mod config;
mod decision;
mod dispatch;
mod error;
mod expert_bias;
mod losses;
mod router;
mod sinkhorn;
mod stats;
mod topk;

pub use capacity::{copy_limit, expert_capacity};
pub use config::{
    AuxFreeConfig, AuxLoss, Capacity, DropPolicy, RouterConfig, RouterKind, ScoreFn, SinkhornConfig, TopKWeights,
};
pub use decision::{RouteMode, RoutingDecision};
pub use dispatch::Dispatch;
pub use error::{Result, RouterError};
pub use expert_bias::ExpertBias;
pub use losses::{
    load_balancing_loss_hf, logsumexp_rows, sequence_aux_loss, switch_aux_loss, switch_aux_loss_from, z_loss,
    BalanceStats,
};
pub use router::Router;
pub use sinkhorn::sinkhorn;
pub use stats::RoutingStats;

/// The README's example runs as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
