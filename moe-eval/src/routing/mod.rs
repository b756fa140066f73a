//! Routing metrics of MoE layers, computed from recorded top-k choices
//! ([`RoutingTrace`]): load and MRI ([`load`]), change between checkpoints
//! ([`change`]), vocabulary specialisation and co-activation ([`specialisation`]),
//! and recording them from a model ([`collect`]).
#![allow(non_snake_case)] // shape suffixes: topk_ids_NK, tokens_E

pub mod change;
pub mod collect;
pub mod load;
pub mod specialisation;
pub mod trace;

pub use change::{routing_change, LayerChange};
pub use collect::{collect_routing, evaluate_domain, DomainEval};
pub use load::{batch_mri, layer_load, median, routing_load, LayerLoad};
pub use specialisation::{
    co_activation, vocab_specialisation, CoActivation, ExpertVocab, TokenShare, VocabSpecialisation,
};
pub use trace::{LayerTrace, RoutingTrace};
