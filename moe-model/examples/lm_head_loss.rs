//! Times the LM head's loss, forward + backward, fused
//! (`h.linear_cross_entropy(&w, ..)`) against the separate `matmul` and
//! `cross_entropy`, on random `h [N, D]`, `w [V, D]` and targets, and checks
//! that the two give the same loss. `MOE_LCE_CHUNK_ROWS` sets the fused
//! op's rows per chunk, for comparing chunk sizes.
//!
//! `RAYON_NUM_THREADS=2 cargo run -p moe-model --release --example lm_head_loss -- N V D STEPS [bf16]`

use moe_tensor::init::Rng;
use moe_tensor::{with_matmul_precision, DType, Device, MatmulPrecision, Reduction, Tensor};
use std::time::Instant;

fn main() -> anyhow::Result<()> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let precision = if args.last().map(String::as_str) == Some("bf16") {
        args.pop();
        MatmulPrecision::Bf16
    } else {
        MatmulPrecision::Highest
    };
    let a: Vec<usize> = args.iter().map(|s| s.parse()).collect::<Result<_, _>>()?;
    let [n, v, d, steps] = a[..] else {
        anyhow::bail!("usage: lm_head_loss N V D STEPS [bf16]");
    };
    let dev = Device::Cpu;
    let mut rng = Rng::seed(0);
    let h = rng.normal((n, d), 0.0, 1.0, DType::F32, &dev)?;
    let w = rng.normal((v, d), 0.0, 0.02, DType::F32, &dev)?;
    let targets: Vec<i64> = (0..n).map(|_| rng.below(v as u64) as i64).collect();
    let targets = Tensor::from_vec(targets, n, &dev)?;
    with_matmul_precision(precision, || -> anyhow::Result<()> {
        let mut losses = Vec::new();
        for fused in [true, false] {
            let mut times = Vec::new();
            for _ in 0..steps + 1 {
                let (hp, wp) = (h.detach().to_param(), w.detach().to_param());
                let t = Instant::now();
                let loss = if fused {
                    hp.linear_cross_entropy(&wp, &targets, -100, Reduction::Mean)?
                } else {
                    hp.matmul(&wp.t()?)?.cross_entropy(&targets, -100, Reduction::Mean)?
                };
                loss.backward()?;
                times.push(t.elapsed().as_secs_f64() * 1e3);
                losses.push(loss.to_vec::<f32>()?[0]);
            }
            let mut t = times[1..].to_vec();
            t.sort_by(f64::total_cmp);
            let name = if fused { "fused   " } else { "separate" };
            println!(
                "{name} {precision:?}: median {:.1} ms, min {:.1} ms",
                t[t.len() / 2],
                t[0]
            );
        }
        let same = losses.windows(2).all(|p| p[0].to_bits() == p[1].to_bits());
        println!("loss {} (the same bits every time: {same})", losses[0]);
        Ok(())
    })
}
