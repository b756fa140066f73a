//! Autoregressive generation with a KV cache: greedy, or sampling with a
//! temperature and nucleus (top-p) truncation. Routing runs in inference mode.

use crate::{Decoder, Error, KvCache, Result};
use moe_tensor::init::Rng;
use moe_tensor::{no_grad, Tensor};

/// How the next token is chosen.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Sampling {
    /// The most likely token (ties to the lower id, as torch's argmax).
    Greedy,
    /// A draw from softmax(logits / temperature) restricted to the smallest set
    /// of most likely tokens whose probability reaches `top_p`.
    Sample {
        /// Divides the logits (> 0).
        temperature: f64,
        /// Nucleus mass in (0, 1]; 1 keeps every token.
        top_p: f64,
    },
}

/// Picks one token from a row of logits.
fn pick(logits: &[f64], sampling: Sampling, rng: &mut Rng) -> usize {
    match sampling {
        Sampling::Greedy => {
            let mut best = 0;
            for (i, &v) in logits.iter().enumerate() {
                if v > logits[best] {
                    best = i;
                }
            }
            best
        }
        Sampling::Sample { temperature, top_p } => {
            let m = logits.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let mut p: Vec<(usize, f64)> = logits
                .iter()
                .enumerate()
                .map(|(i, &v)| (i, ((v - m) / temperature).exp()))
                .collect();
            let z: f64 = p.iter().map(|x| x.1).sum();
            p.iter_mut().for_each(|x| x.1 /= z);
            p.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
            // Keep tokens until the mass before them reaches top_p (at least one).
            let mut kept = 0;
            let mut mass = 0.0;
            while kept < p.len() && (kept == 0 || mass < top_p) {
                mass += p[kept].1;
                kept += 1;
            }
            let mut u = rng.next_f64() * mass;
            for &(i, q) in &p[..kept] {
                if u < q {
                    return i;
                }
                u -= q;
            }
            p[kept - 1].0
        }
    }
}

/// Continues every row of `prompt [B, P]` (I64) by `max_new_tokens` tokens and
/// returns `[B, P + max_new_tokens]`. `rng` is only drawn from when sampling.
pub fn generate(
    model: &Decoder,
    prompt: &Tensor,
    max_new_tokens: usize,
    sampling: Sampling,
    rng: &mut Rng,
) -> Result<Tensor> {
    if let Sampling::Sample { temperature, top_p } = sampling {
        if !(temperature.is_finite() && temperature > 0.0) {
            return Err(Error::config(
                "temperature",
                format!("{temperature} must be finite and > 0"),
            ));
        }
        if !(top_p > 0.0 && top_p <= 1.0) {
            return Err(Error::config("top_p", format!("{top_p} must be in (0, 1]")));
        }
    }
    if prompt.rank() != 2 || prompt.elem_count() == 0 {
        return Err(Error::BadInput {
            what: "prompt",
            msg: format!("need a non-empty [B, P] batch, got {:?}", prompt.dims()),
        });
    }
    let b = prompt.dims()[0];
    let mut rows: Vec<Vec<i64>> = prompt
        .to_vec::<i64>()?
        .chunks(prompt.dims()[1])
        .map(|r| r.to_vec())
        .collect();
    no_grad(|| -> Result<()> {
        let mut cache = KvCache::default();
        let mut input = prompt.clone();
        for _ in 0..max_new_tokens {
            let logits = model.forward_cached(&input, &mut cache)?.logits; // [B, T, V]
            let (t, v) = (logits.dims()[1], logits.dims()[2]);
            let last = logits.narrow(1, t - 1, 1)?.to_vec_f64()?;
            let next: Vec<i64> = (0..b)
                .map(|r| pick(&last[r * v..(r + 1) * v], sampling, rng) as i64)
                .collect();
            for (row, &n) in rows.iter_mut().zip(&next) {
                row.push(n);
            }
            input = Tensor::from_vec(next, (b, 1), &prompt.device())?;
        }
        Ok(())
    })?;
    let len = rows[0].len();
    Ok(Tensor::from_vec(rows.concat(), (b, len), &prompt.device())?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_p_keeps_the_nucleus_only() {
        // probabilities ∝ exp([2, 1, 0, -5]) ≈ [0.66, 0.24, 0.09, 0.0006]
        let logits = [2.0, 1.0, 0.0, -5.0];
        let mut rng = Rng::seed(3);
        let s = Sampling::Sample {
            temperature: 1.0,
            top_p: 0.8,
        };
        let mut seen = [0usize; 4];
        for _ in 0..2000 {
            seen[pick(&logits, s, &mut rng)] += 1;
        }
        assert_eq!(seen[2] + seen[3], 0, "{seen:?}");
        // Renormalised over {0, 1}: 0.73 / 0.27.
        let share = seen[0] as f64 / 2000.0;
        assert!((share - 0.731).abs() < 0.04, "{share}");
        assert_eq!(pick(&logits, Sampling::Greedy, &mut rng), 0);
    }
}
