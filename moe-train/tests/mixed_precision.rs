//! bf16 mixed precision on the CPU (`precision = "bf16"`: matmul, expert and
//! attention products on bf16-rounded operands, f32 everywhere else) against
//! the same runs in f32.

mod common;

use common::{dataset, run_losses};
use moe_tensor::Device;

/// Largest relative difference between two loss curves.
fn max_rel_diff(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs() / y.abs())
        .fold(0.0, f64::max)
}

/// 30 steps of a tiny dense, Switch (top-1) and granular (shared expert)
/// model from the same weights and batches, in bf16 and in f32. The first
/// loss differs only by the operands' rounding (relative 2^-9 each, mostly
/// averaging out over the batch's tokens; measured 1e-7 to 3e-6): within
/// 1e-4. Later losses also carry the rounding through the updates (and can
/// flip a near-tied routing decision; measured up to 3e-3): within 1e-2.
/// Both runs learn, and the curves are not the same (the setting took
/// effect).
#[test]
fn bf16_training_tracks_f32_on_the_cpu() {
    let tmp = tempfile::tempdir().unwrap();
    let data = dataset(tmp.path());
    for preset in ["debug-dense", "debug-switch", "debug-granular"] {
        let dir = |p: &str| tmp.path().join(format!("{preset}-{p}"));
        let (t32, v32) = run_losses(&data, &dir("f32"), Device::Cpu, preset, 30, "f32");
        let (t16, v16) = run_losses(&data, &dir("bf16"), Device::Cpu, preset, 30, "bf16");
        assert_eq!((t32.len(), t16.len()), (30, 30), "{preset}");
        let first = max_rel_diff(&t16[..1], &t32[..1]);
        let train = max_rel_diff(&t16, &t32);
        let val = max_rel_diff(&v16, &v32);
        eprintln!("{preset}: first step {first:.2e}, training {train:.2e}, validation {val:.2e}");
        assert!(first < 1e-4, "{preset}: first loss {} vs {}", t16[0], t32[0]);
        assert!(train < 1e-2, "{preset}: training losses {t16:?} vs {t32:?}");
        assert!(val < 1e-2, "{preset}: validation losses {v16:?} vs {v32:?}");
        assert!(first > 0.0 || train > 0.0, "{preset}: bf16 and f32 runs are identical");
        assert!(t16[29] < t16[0] - 0.1 && t32[29] < t32[0] - 0.1, "{preset}: both learn");
    }
}
