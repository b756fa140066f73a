//! Times causal GQA attention forward and backward on one shape, for kernel
//! experiments where CPU time is steadier than criterion's wall time on a
//! shared machine:
//!
//! ```text
//! RAYON_NUM_THREADS=1 /usr/bin/time -f "%U s user" \
//!     cargo run -p moe-kernels --release --example attention_speed -- 1 8 2 1024 64 5
//! ```
//! Arguments: B Hq Hkv T Dh iterations [Tq] [bf16]. Prints GFLOP/s of the
//! causal products per phase (forward 4·Dh, backward 10·Dh FLOPs per
//! visible pair); `Tq` < T times the last Tq queries against T keys (the
//! shape of decoding with a KV cache: `Tq` 1); `bf16` runs the products in
//! bf16 precision.

use std::time::Instant;

use moe_kernels::cpu::attention::{attention_backward, attention_forward, default_scale, AttnDims};
use moe_kernels::cpu::gemm::ProductPrecision;

fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let precision = if args.last().map(String::as_str) == Some("bf16") {
        args.pop();
        ProductPrecision::Bf16
    } else {
        ProductPrecision::Full
    };
    let a: Vec<usize> = args.iter().map(|s| s.parse().expect("integer argument")).collect();
    let (b, hq, hkv, t, dh, iters, tq) = match a[..] {
        [b, hq, hkv, t, dh, iters] => (b, hq, hkv, t, dh, iters, t),
        [b, hq, hkv, t, dh, iters, tq] if tq <= t => (b, hq, hkv, t, dh, iters, tq),
        _ => {
            eprintln!("usage: attention_speed B Hq Hkv T Dh iterations [Tq ≤ T] [bf16]");
            std::process::exit(2);
        }
    };
    let d = AttnDims {
        tq,
        ..AttnDims::causal(b, hq, hkv, t, dh)
    };
    let fill = |n: usize, s: usize| -> Vec<f32> {
        (0..n)
            .map(|i| ((i * 7919 + s * 104_729) % 2003) as f32 / 1000.0 - 1.0)
            .collect()
    };
    let (nq, nkv) = (b * hq * tq * dh, b * hkv * t * dh);
    let (q, k, v, d_o) = (fill(nq, 1), fill(nkv, 2), fill(nkv, 3), fill(nq, 4));
    let mut out = None;
    let scale = default_scale::<f32>(dh);
    // Query i (of the last tq) sees t − tq + i + 1 keys.
    let pairs = (b * hq * (tq * (t - tq) + tq * (tq + 1) / 2)) as f64;
    // Mean and minimum per phase: the minimum is the steadier figure for
    // comparing two builds on a shared machine.
    let (mut tf, mut tb) = (Vec::new(), Vec::new());
    for _ in 0..iters {
        let s = Instant::now();
        let (o, lse) = attention_forward(&q, &k, &v, d, scale, precision).expect("forward");
        tf.push(s.elapsed().as_secs_f64());
        let s = Instant::now();
        let grads = attention_backward(&d_o, &q, &k, &v, &o, &lse, d, scale, precision).expect("backward");
        tb.push(s.elapsed().as_secs_f64());
        out = Some((o, grads));
    }
    let mean = |t: &[f64]| t.iter().sum::<f64>() / t.len() as f64;
    let min = |t: &[f64]| t.iter().copied().fold(f64::INFINITY, f64::min);
    let (mf, mb) = (mean(&tf), mean(&tb));
    println!(
        "forward {:.2} ms ({:.1} GFLOP/s, min {:.2} ms), backward {:.2} ms ({:.1} GFLOP/s, min {:.2} ms), checksum {:.6}",
        mf * 1e3,
        pairs * 4.0 * dh as f64 / mf / 1e9,
        min(&tf) * 1e3,
        mb * 1e3,
        pairs * 10.0 * dh as f64 / mb / 1e9,
        min(&tb) * 1e3,
        out.iter()
            .flat_map(|(o, (dq, dk, dv))| o.iter().chain(dq).chain(dk).chain(dv))
            .map(|&x| x as f64)
            .sum::<f64>()
    );
}
