//! Training FLOPs per token (Kaplan et al. 2020): 6 · N + 6 · L · T · d_attn,
//! where N counts the parameters a token multiplies with (routed experts k
//! times, the LM head, not the embedding lookup) and the second term is the
//! attention scores and weighted sum over a context of T.

use moe_model::ModelConfig;

/// FLOPs of one training token (forward + backward) at sequence length `seq_len`.
pub fn training_flops_per_token(cfg: &ModelConfig, seq_len: usize) -> f64 {
    let active = cfg.param_count().active as f64;
    let table = (cfg.vocab_size * cfg.hidden_size) as f64;
    // The embedding lookup does no multiplications; a tied table is still the head.
    let matmul_params = if cfg.tie_word_embeddings {
        active
    } else {
        active - table
    };
    let attn_width = (cfg.num_heads * cfg.head_dim()) as f64;
    6.0 * matmul_params + 6.0 * cfg.num_layers as f64 * seq_len as f64 * attn_width
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dense_by_hand() {
        let mut c = moe_model::presets::debug_dense();
        (c.vocab_size, c.hidden_size, c.num_layers, c.num_heads, c.num_kv_heads) = (10, 4, 1, 2, 2);
        (c.intermediate_size, c.tie_word_embeddings) = (8, false);
        // attention 4·16, FFN 3·4·8, norms 3·4, head 10·4 (the table is not multiplied).
        let n = 64.0 + 96.0 + 12.0 + 40.0;
        assert_eq!(training_flops_per_token(&c, 5), 6.0 * n + 6.0 * 1.0 * 5.0 * 4.0);
    }
}
