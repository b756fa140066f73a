//! Every router on a CUDA device against the CPU: the MoE layer's output,
//! losses and gradients, the choices, drops and statistics; and the routing
//! of a training forward and backward reads nothing back from the device.
//! Without a device (or without the `cuda` feature) each test prints why and
//! passes: `cargo test -p moe-router --features cuda --test cuda_router`.

mod common;

use common::{moe_layer, moe_outputs};
use moe_router::{AuxLoss, DropPolicy, RouteMode, RouterConfig};
use moe_tensor::cuda_backend::host_reads;
use moe_tensor::device_check::{accelerators_or_skip, compare_with_cpu, Tolerance};
use moe_tensor::init::Rng;
use moe_tensor::{DType, Device, Result, Tensor};

const N: usize = 96;
const D: usize = 16;
const F: usize = 24;
const E: usize = 8;

/// Every router kind with each capacity policy and each aux loss.
fn configs() -> Vec<(&'static str, RouterConfig)> {
    let mut sequence = RouterConfig::deepseek_v2(E, 2, 1.0);
    sequence.aux_loss = AuxLoss::Sequence { seq_len: 32 };
    vec![
        ("mixtral dropless", RouterConfig::mixtral(E, 2)),
        (
            "switch position capacity",
            RouterConfig::switch(E).with_capacity(1.0, DropPolicy::Position),
        ),
        (
            "mixtral score capacity",
            RouterConfig::mixtral(E, 2).with_capacity(1.0, DropPolicy::Score),
        ),
        ("sinkhorn top-1", RouterConfig::sinkhorn(E, 1)),
        (
            "sinkhorn top-2 capacity",
            RouterConfig::sinkhorn(E, 2).with_capacity(1.25, DropPolicy::Score),
        ),
        ("aux-free", RouterConfig::aux_free(E, 2, 2.5)),
        ("deepseek sequence aux loss", sequence),
    ]
}

/// x, router weight, W1, W2 in f32; the router weight is skewed towards
/// expert 0 so the capacity configs drop copies.
fn inputs(seed: u64) -> Result<Vec<Tensor>> {
    let mut rng = Rng::seed(seed);
    let mut normal = |dims: &[usize], std: f64| rng.normal(dims.to_vec(), 0.0, std, DType::F32, &Device::Cpu);
    let x = normal(&[N, D], 1.0)?;
    let skew = Tensor::from_vec(
        (0..E * D).map(|i| if i < D { 0.4f32 } else { 0.0 }).collect::<Vec<_>>(),
        (E, D),
        &Device::Cpu,
    )?;
    let w_router = normal(&[E, D], 0.5)?.add(&skew)?;
    Ok(vec![x, w_router, normal(&[E, D, F], 0.3)?, normal(&[E, F, D], 0.3)?])
}

#[test]
fn every_router_matches_the_cpu() -> Result<()> {
    for dev in accelerators_or_skip("every_router_matches_the_cpu") {
        let t = inputs(31)?;
        for (name, config) in configs() {
            let f = |t: &[Tensor]| moe_outputs(config, None, RouteMode::Train, t);
            compare_with_cpu(name, &dev, f, &t, true, Tolerance::F32_REDUCE)?;
            // The same choices, drops and statistics on both devices.
            let route_on = |d: &Device| -> Result<_> {
                let t: Vec<Tensor> = t.iter().map(|x| x.to_device(d)).collect::<Result<_>>()?;
                let (_, route) = moe_layer(config, None, RouteMode::Train, &t[0], &t[1], &t[2], &t[3])
                    .map_err(common::to_tensor_err)?;
                Ok(route)
            };
            let (cpu, gpu) = (route_on(&Device::Cpu)?, route_on(&dev)?);
            assert_eq!(
                gpu.topk_ids_NK.to_vec::<i64>()?,
                cpu.topk_ids_NK.to_vec::<i64>()?,
                "{name}"
            );
            assert_eq!(gpu.dropped_NK.to_vec::<u8>()?, cpu.dropped_NK.to_vec::<u8>()?, "{name}");
            let stats = |r: &moe_router::RoutingDecision| r.stats().cloned().map_err(common::to_tensor_err);
            assert_eq!(stats(&gpu)?, stats(&cpu)?, "{name}");
        }
    }
    Ok(())
}

#[test]
fn routing_reads_nothing_back_from_the_device() -> Result<()> {
    for dev in accelerators_or_skip("routing_reads_nothing_back_from_the_device") {
        let t: Vec<Tensor> = inputs(32)?
            .iter()
            .map(|x| Ok(x.to_device(&dev)?.to_param()))
            .collect::<Result<_>>()?;
        for (name, config) in configs() {
            let before = host_reads();
            let (y, route) =
                moe_layer(config, None, RouteMode::Train, &t[0], &t[1], &t[2], &t[3]).map_err(common::to_tensor_err)?;
            let mut loss = y.sqr()?.sum_all()?;
            if let Some(extra) = route.weighted_loss().map_err(common::to_tensor_err)? {
                loss = loss.add(&extra)?;
            }
            loss.backward()?;
            assert_eq!(
                host_reads() - before,
                0,
                "{name}: the forward and backward read the device"
            );
            // The counter sees reads: the statistics are one.
            route.stats().map_err(common::to_tensor_err)?;
            assert!(host_reads() > before, "{name}: reading the statistics is not counted");
        }
    }
    Ok(())
}
