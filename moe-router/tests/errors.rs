//! Bad input gives typed errors naming the argument or field, never a panic;
//! configs round-trip through TOML and JSON.

use moe_router::{AuxLoss, RouteMode, Router, RouterConfig, RouterError};
use moe_tensor::{DType, Device, Tensor};

fn zeros(dims: &[usize], dtype: DType) -> Tensor {
    Tensor::zeros(dims.to_vec(), dtype, &Device::Cpu).unwrap()
}

fn shape_err<T: std::fmt::Debug>(r: moe_router::Result<T>) -> &'static str {
    match r {
        Err(RouterError::Shape { what, .. }) => what,
        other => panic!("expected a shape error, got {other:?}"),
    }
}

#[test]
fn bad_shapes_and_dtypes_are_named() {
    let cfg = RouterConfig::mixtral(4, 2);
    assert_eq!(shape_err(Router::new(cfg, zeros(&[3, 8], DType::F32))), "router weight");
    assert_eq!(
        shape_err(Router::new(cfg, zeros(&[4, 8, 1], DType::F32))),
        "router weight"
    );
    assert!(matches!(
        Router::new(cfg, zeros(&[4, 8], DType::I64)),
        Err(RouterError::DType {
            what: "router weight",
            ..
        })
    ));
    let r = Router::new(cfg, zeros(&[4, 8], DType::F32)).unwrap();
    assert_eq!(
        shape_err(r.route(&zeros(&[5, 7], DType::F32), RouteMode::Train)),
        "router input"
    );
    assert_eq!(
        shape_err(r.route(&zeros(&[2, 5, 8], DType::F32), RouteMode::Train)),
        "router input"
    );
    assert!(matches!(
        r.route(&zeros(&[5, 8], DType::I64), RouteMode::Train),
        Err(RouterError::DType {
            what: "router input",
            ..
        })
    ));
    assert_eq!(
        shape_err(r.route_logits(&zeros(&[5, 3], DType::F32), RouteMode::Train)),
        "router logits"
    );

    let d = r.route(&zeros(&[5, 8], DType::F32), RouteMode::Train).unwrap();
    assert_eq!(shape_err(d.permute(&zeros(&[6, 8], DType::F32))), "dispatch input");
    assert_eq!(shape_err(d.combine(&zeros(&[9, 3], DType::F32))), "expert outputs");
    // Empty batch: nothing routed, nothing to compute, no panic.
    let mut pb = RouterConfig::penalty_balanced(4, 2);
    pb.capacity = moe_router::Capacity::Factor {
        factor: 1.0,
        drop_policy: moe_router::DropPolicy::Score,
    };
    let r = Router::new(pb, zeros(&[4, 8], DType::F32)).unwrap();
    let empty = r.route(&zeros(&[0, 8], DType::F32), RouteMode::Train).unwrap();
    assert_eq!(empty.tokens_per_expert_E.to_vec::<i64>().unwrap(), vec![0, 0, 0, 0]);
    assert_eq!(empty.stats().unwrap().mri, 0.0);
    assert_eq!(empty.weighted_loss().unwrap().unwrap().to_scalar_f64().unwrap(), 0.0);
    assert_eq!(empty.combine(&zeros(&[0, 3], DType::F32)).unwrap().dims(), &[0, 3]);
    // The same through the dropless (device-planned) path.
    let r = Router::new(RouterConfig::penalty_balanced(4, 2), zeros(&[4, 8], DType::F32)).unwrap();
    let empty = r.route(&zeros(&[0, 8], DType::F32), RouteMode::Train).unwrap();
    assert_eq!(empty.tokens_per_expert_E.to_vec::<i64>().unwrap(), vec![0, 0, 0, 0]);
    assert_eq!(empty.stats().unwrap().mri, 0.0);
    assert_eq!(empty.weighted_loss().unwrap().unwrap().to_scalar_f64().unwrap(), 0.0);
    let x_md = empty.permute(&zeros(&[0, 8], DType::F32)).unwrap();
    assert_eq!(x_md.dims(), &[0, 8]);
    assert_eq!(empty.combine(&zeros(&[0, 3], DType::F32)).unwrap().dims(), &[0, 3]);
}

#[test]
fn bad_configs_are_rejected_with_the_field() {
    let mut cfg = RouterConfig::mixtral(4, 5);
    let field = |c: RouterConfig| match Router::new(c, zeros(&[4, 8], DType::F32)) {
        Err(RouterError::Config { field, .. }) => field,
        other => panic!("expected a config error, got {other:?}"),
    };
    assert_eq!(field(cfg), "top_k");
    cfg = RouterConfig::mixtral(4, 2);
    cfg.aux_loss = AuxLoss::Sequence { seq_len: 0 };
    assert_eq!(field(cfg), "aux_loss.seq_len");
    // A batch that is not a whole number of sequences.
    cfg.aux_loss = AuxLoss::Sequence { seq_len: 4 };
    let r = Router::new(cfg, zeros(&[4, 8], DType::F32)).unwrap();
    assert!(matches!(
        r.route(&zeros(&[6, 8], DType::F32), RouteMode::Train),
        Err(RouterError::Invalid { .. })
    ));
    // The aux-free bias must have one finite value per expert.
    let r = Router::new(RouterConfig::aux_free(4, 2, 1.0), zeros(&[4, 8], DType::F32)).unwrap();
    assert!(r.expert_bias().unwrap().set_bias(&[0.0; 3]).is_err());
    assert!(r.expert_bias().unwrap().set_bias(&[0.0, f32::NAN, 0.0, 0.0]).is_err());
}

#[test]
fn configs_round_trip_through_toml_and_json() -> anyhow::Result<()> {
    for cfg in [
        RouterConfig::penalty_balanced(31, 3),
        RouterConfig::sinkhorn(8, 1),
        RouterConfig::aux_free(32, 4, 2.5).with_capacity(1.25, moe_router::DropPolicy::Score),
    ] {
        let toml_text = toml::to_string(&cfg)?;
        assert_eq!(toml::from_str::<RouterConfig>(&toml_text)?, cfg, "{toml_text}");
        let json = serde_json::to_string(&cfg)?;
        assert_eq!(serde_json::from_str::<RouterConfig>(&json)?, cfg);
    }
    // Optional fields default to dropless, no aux loss, zero coefficients.
    let minimal =
        "num_experts = 8\ntop_k = 2\n[kind]\ntype = \"softmax_top_k\"\nrenormalize = true\nscaling_factor = 1.0\n";
    assert_eq!(toml::from_str::<RouterConfig>(minimal)?, RouterConfig::mixtral(8, 2));
    // Unknown router types are an error.
    let bad = "num_experts = 8\ntop_k = 2\n[kind]\ntype = \"expert_choice\"\n";
    assert!(toml::from_str::<RouterConfig>(bad).is_err());
    Ok(())
}
