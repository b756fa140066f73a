//! Every check made before upcycling: the dense source against the target
//! config, the method's own needs, and the options. Each failure is an
//! [`Error::Upcycle`] naming the config field or option at fault.

use super::{granular, UpcycleMethod, UpcycleOptions};
use crate::{Error, ModelConfig, Result};

fn bad(field: &str, msg: impl Into<String>) -> Error {
    Error::Upcycle {
        field: field.into(),
        msg: msg.into(),
    }
}

/// Checks that `source` (the dense model's config) can be upcycled into
/// `target` with `method` and `opts`.
///
/// The target must validate, be an MoE, and equal the source in every field
/// the copied parameters or the dense function depend on: `vocab_size`,
/// `hidden_size`, `num_layers`, `num_heads`, `num_kv_heads`, the head width,
/// `intermediate_size` (the FFN width; dense layers keep it), `activation`,
/// `tie_word_embeddings`, `attention_bias`, `rope_theta` and `rms_norm_eps`.
/// (`max_position_embeddings` and `init_std` may differ.) Naive and drop
/// upcycling need routed experts as wide as the dense FFN and no shared
/// expert; drop needs a ratio in [0, 1]; granular needs slices that tile the
/// FFN (see [`granular::plan`]); the router std must be finite and ≥ 0.
pub fn check(source: &ModelConfig, target: &ModelConfig, method: &UpcycleMethod, opts: &UpcycleOptions) -> Result<()> {
    if source.moe.is_some() {
        return Err(bad(
            "moe",
            "the source is already an MoE; upcycling starts from a dense model",
        ));
    }
    target.validate()?;
    let same = |field: &str, src: String, tgt: String| {
        if src == tgt {
            Ok(())
        } else {
            Err(bad(
                field,
                format!("the dense source has {src}, the target config {tgt}"),
            ))
        }
    };
    same(
        "vocab_size",
        source.vocab_size.to_string(),
        target.vocab_size.to_string(),
    )?;
    same(
        "hidden_size",
        source.hidden_size.to_string(),
        target.hidden_size.to_string(),
    )?;
    same(
        "num_layers",
        source.num_layers.to_string(),
        target.num_layers.to_string(),
    )?;
    same("num_heads", source.num_heads.to_string(), target.num_heads.to_string())?;
    same(
        "num_kv_heads",
        source.num_kv_heads.to_string(),
        target.num_kv_heads.to_string(),
    )?;
    same("head_dim", source.head_dim().to_string(), target.head_dim().to_string())?;
    same(
        "intermediate_size",
        source.intermediate_size.to_string(),
        target.intermediate_size.to_string(),
    )?;
    same(
        "activation",
        format!("{:?}", source.activation),
        format!("{:?}", target.activation),
    )?;
    same(
        "tie_word_embeddings",
        source.tie_word_embeddings.to_string(),
        target.tie_word_embeddings.to_string(),
    )?;
    same(
        "attention_bias",
        source.attention_bias.to_string(),
        target.attention_bias.to_string(),
    )?;
    same(
        "rope_theta",
        source.rope_theta.to_string(),
        target.rope_theta.to_string(),
    )?;
    same(
        "rms_norm_eps",
        source.rms_norm_eps.to_string(),
        target.rms_norm_eps.to_string(),
    )?;
    let Some(m) = &target.moe else {
        return Err(bad(
            "moe",
            "the target config has no moe section (it describes a dense model)",
        ));
    };
    let std = opts.router_init_std;
    if !(std.is_finite() && std >= 0.0) {
        return Err(bad("router_init_std", format!("{std} must be finite and ≥ 0")));
    }
    match method {
        UpcycleMethod::Naive | UpcycleMethod::Drop { .. } => {
            if m.expert_intermediate_size != source.intermediate_size {
                return Err(bad(
                    "moe.expert_intermediate_size",
                    format!(
                        "{}: naive and drop upcycling copy the whole dense FFN (width {}) into each expert; \
                         use granular upcycling for narrower experts",
                        m.expert_intermediate_size, source.intermediate_size
                    ),
                ));
            }
            if m.shared_intermediate_size > 0 {
                return Err(bad(
                    "moe.shared_intermediate_size",
                    format!(
                        "{}: naive and drop upcycling build experts only (Mixtral style); \
                         use granular upcycling for a shared expert",
                        m.shared_intermediate_size
                    ),
                ));
            }
        }
        UpcycleMethod::Granular => {
            granular::plan(source.intermediate_size, m, opts.shared_init)?;
        }
    }
    if let UpcycleMethod::Drop { ratio, .. } = method {
        if !(ratio.is_finite() && (0.0..=1.0).contains(ratio)) {
            return Err(bad("ratio", format!("{ratio} is outside [0, 1]")));
        }
    }
    Ok(())
}
