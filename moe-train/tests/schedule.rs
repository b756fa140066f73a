//! Learning-rate schedules: exact values at phase boundaries, worked out by hand.

use moe_train::schedule::{DecayShape, ScheduleConfig};

fn close(got: f64, want: f64) {
    assert!(
        (got - want).abs() <= 1e-15 + 1e-12 * want.abs(),
        "got {got}, want {want}"
    );
}

#[test]
fn cosine_boundaries() {
    let s = ScheduleConfig::Cosine {
        max_lr: 3e-4,
        min_lr: 3e-5,
        warmup_steps: 10,
        total_steps: 110,
    };
    s.validate().unwrap();
    close(s.lr_at(0), 0.0);
    close(s.lr_at(1), 3e-5); // 3e-4 · 1/10
    close(s.lr_at(10), 3e-4); // end of warmup
    close(s.lr_at(60), 1.65e-4); // half-way: (3e-4 + 3e-5) / 2
    close(
        s.lr_at(35),
        3e-5 + 2.7e-4 * 0.5 * (1.0 + (std::f64::consts::PI / 4.0).cos()),
    );
    close(s.lr_at(110), 3e-5);
    close(s.lr_at(1000), 3e-5);
}

#[test]
fn rewarm_starts_from_the_decayed_value() {
    let s = ScheduleConfig::Rewarm {
        start_lr: 3e-5,
        max_lr: 3e-4,
        min_lr: 3e-5,
        warmup_steps: 10,
        total_steps: 110,
    };
    s.validate().unwrap();
    close(s.lr_at(0), 3e-5);
    close(s.lr_at(1), 3e-5 + 2.7e-5);
    close(s.lr_at(10), 3e-4);
    close(s.lr_at(60), 1.65e-4);
    close(s.lr_at(110), 3e-5);
    close(s.lr_at(111), 3e-5);
}

#[test]
fn wsd_boundaries() {
    for (shape, mid) in [(DecayShape::Linear, 1.65e-4), (DecayShape::Cosine, 1.65e-4)] {
        let s = ScheduleConfig::Wsd {
            max_lr: 3e-4,
            min_lr: 3e-5,
            warmup_steps: 4,
            decay_steps: 20,
            total_steps: 100,
            decay_shape: shape,
        };
        s.validate().unwrap();
        close(s.lr_at(1), 7.5e-5);
        close(s.lr_at(4), 3e-4);
        close(s.lr_at(50), 3e-4);
        close(s.lr_at(80), 3e-4); // decay starts after update 80
        close(s.lr_at(90), mid);
        close(s.lr_at(100), 3e-5);
        close(s.lr_at(500), 3e-5);
    }
    let lin = ScheduleConfig::Wsd {
        max_lr: 3e-4,
        min_lr: 3e-5,
        warmup_steps: 4,
        decay_steps: 20,
        total_steps: 100,
        decay_shape: DecayShape::Linear,
    };
    close(lin.lr_at(85), 3e-4 - 2.7e-4 * 0.25);
}

fn infinite(anneal_start: Option<u64>, shape: DecayShape) -> ScheduleConfig {
    ScheduleConfig::Infinite {
        max_lr: 3e-4,
        constant_lr: 1.65e-4,
        min_lr: 3e-5,
        warmup_steps: 10,
        cooldown_steps: 40,
        anneal_start,
        anneal_steps: 20,
        anneal_shape: shape,
    }
}

#[test]
fn infinite_boundaries() {
    let s = infinite(Some(1000), DecayShape::Linear);
    s.validate().unwrap();
    close(s.lr_at(1), 3e-5);
    close(s.lr_at(10), 3e-4);
    close(s.lr_at(30), (3e-4 + 1.65e-4) / 2.0); // half-way through the cosine cooldown
    close(s.lr_at(50), 1.65e-4); // end of cooldown
    close(s.lr_at(999), 1.65e-4);
    close(s.lr_at(1000), 1.65e-4); // last constant update
    close(s.lr_at(1010), (1.65e-4 + 3e-5) / 2.0);
    close(s.lr_at(1005), 1.65e-4 - 1.35e-4 * 0.25);
    close(s.lr_at(1020), 3e-5);
    close(s.lr_at(5000), 3e-5);
    let c = infinite(Some(1000), DecayShape::Cosine);
    close(
        c.lr_at(1005),
        3e-5 + 1.35e-4 * 0.5 * (1.0 + (std::f64::consts::PI / 4.0).cos()),
    );
    // Without an anneal the constant phase never ends.
    close(infinite(None, DecayShape::Linear).lr_at(10_000_000), 1.65e-4);
}

#[test]
fn infinite_cpt_resumes_at_the_constant_without_rewarm() {
    let cpt = ScheduleConfig::Infinite {
        max_lr: 1.65e-4,
        constant_lr: 1.65e-4,
        min_lr: 3e-5,
        warmup_steps: 0,
        cooldown_steps: 0,
        anneal_start: Some(100),
        anneal_steps: 10,
        anneal_shape: DecayShape::Linear,
    };
    cpt.validate().unwrap();
    close(cpt.lr_at(0), 1.65e-4);
    close(cpt.lr_at(1), 1.65e-4);
    close(cpt.lr_at(100), 1.65e-4);
    close(cpt.lr_at(105), (1.65e-4 + 3e-5) / 2.0);
    close(cpt.lr_at(110), 3e-5);
}

#[test]
fn constant_and_presets() {
    let s = ScheduleConfig::Constant {
        lr: 1e-3,
        warmup_steps: 0,
    };
    close(s.lr_at(0), 1e-3);
    close(s.lr_at(12345), 1e-3);
    let w = ScheduleConfig::Constant {
        lr: 1e-3,
        warmup_steps: 5,
    };
    close(w.lr_at(1), 2e-4);
    close(w.lr_at(5), 1e-3);
    close(w.lr_at(6), 1e-3);
    match ScheduleConfig::paper_cosine(1000) {
        ScheduleConfig::Cosine {
            max_lr,
            min_lr,
            warmup_steps,
            total_steps,
        } => {
            assert_eq!((max_lr, min_lr, warmup_steps, total_steps), (3e-4, 3e-5, 10, 1000));
        }
        other => panic!("{other:?}"),
    }
    match ScheduleConfig::paper_infinite(250, 50) {
        ScheduleConfig::Infinite {
            constant_lr,
            warmup_steps,
            ..
        } => assert_eq!((constant_lr, warmup_steps), (1.65e-4, 3)),
        other => panic!("{other:?}"),
    }
}

#[test]
fn deserialise_and_validate_name_the_field() {
    let s: ScheduleConfig =
        serde_json::from_str(r#"{"kind":"cosine","max_lr":3e-4,"min_lr":3e-5,"warmup_steps":10,"total_steps":100}"#)
            .unwrap();
    assert_eq!(
        s,
        ScheduleConfig::Cosine {
            max_lr: 3e-4,
            min_lr: 3e-5,
            warmup_steps: 10,
            total_steps: 100
        }
    );
    let unknown = serde_json::from_str::<ScheduleConfig>(r#"{"kind":"constant","lr":1e-3,"warmup":3}"#).unwrap_err();
    assert!(unknown.to_string().contains("warmup"), "{unknown}");
    let bad_type = serde_json::from_str::<ScheduleConfig>(r#"{"kind":"constant","lr":"fast"}"#).unwrap_err();
    assert!(bad_type.to_string().contains("invalid type"), "{bad_type}");
    let cases = [
        (
            ScheduleConfig::Cosine {
                max_lr: 1e-4,
                min_lr: 1e-3,
                warmup_steps: 1,
                total_steps: 10,
            },
            "schedule.min_lr",
        ),
        (
            ScheduleConfig::Cosine {
                max_lr: 1e-3,
                min_lr: 1e-4,
                warmup_steps: 11,
                total_steps: 10,
            },
            "schedule.warmup_steps",
        ),
        (
            ScheduleConfig::Constant {
                lr: f64::NAN,
                warmup_steps: 0,
            },
            "schedule.lr",
        ),
        (infinite(Some(20), DecayShape::Linear), "schedule.anneal_start"),
    ];
    for (cfg, field) in cases {
        let err = cfg.validate().unwrap_err().to_string();
        assert!(err.contains(field), "{err} should name {field}");
    }
}
