//! Starting a run: fresh, resumed from its newest checkpoint, or initialised
//! from another run's checkpoint (continual pre-training).

use super::checkpoint::{latest_checkpoint, OPTIMIZER_FILE, TOKENIZER_FILE};
use super::metrics::MetricsLog;
use super::state::{version, RunInfo, TrainerState};
use super::{training_flops_per_token, Trainer, CONFIG_FILE, RUN_FILE, UPCYCLE_FILE};
use crate::config::RunConfig;
use crate::error::{Result, TrainError};
use crate::optim::AdamW;
use moe_data::atomic::write_atomic;
use moe_data::{Dataset, Mixture, Sampler, SamplerConfig, Tokenizer, ValWindows};
use moe_model::decoder::Ffn;
use moe_model::Decoder;
use moe_tensor::init::Rng;
use moe_tensor::Device;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Succeeds when tensors can be made on `device` here (starting the GPU);
/// otherwise a one-line [`TrainError::DeviceUnavailable`] with moe-tensor's
/// reason (no `cuda` feature in this build, no driver, no such GPU).
pub fn check_device(device: &Device) -> Result<()> {
    device.ensure_available().map_err(|e| TrainError::DeviceUnavailable {
        device: *device,
        reason: match e {
            moe_tensor::Error::DeviceUnavailable { msg, .. } => msg,
            other => other.to_string(),
        },
    })
}

/// The selection biases of the aux-loss-free routers, in layer order.
pub(super) fn expert_biases(model: &Decoder) -> Vec<Vec<f32>> {
    model
        .blocks()
        .iter()
        .filter_map(|b| match &b.ffn {
            Ffn::Moe(m) => m.router.expert_bias().map(|e| e.bias()),
            Ffn::Dense(_) => None,
        })
        .collect()
}

fn restore_expert_biases(model: &Decoder, biases: &[Vec<f32>], origin: &Path) -> Result<()> {
    let routers: Vec<_> = model
        .blocks()
        .iter()
        .filter_map(|b| match &b.ffn {
            Ffn::Moe(m) => m.router.expert_bias(),
            Ffn::Dense(_) => None,
        })
        .collect();
    if routers.len() != biases.len() {
        return Err(TrainError::checkpoint(
            origin,
            format!(
                "holds {} expert-bias vectors, the model has {} aux-free routers",
                biases.len(),
                routers.len()
            ),
        ));
    }
    for (r, b) in routers.iter().zip(biases) {
        r.set_bias(b)
            .map_err(|e| TrainError::checkpoint(origin, e.to_string()))?;
    }
    Ok(())
}

/// The hash of a model folder's tokenizer, when it has one.
fn folder_tokenizer_hash(dir: &Path) -> Result<Option<[u8; 32]>> {
    let path = dir.join(TOKENIZER_FILE);
    if !path.exists() {
        return Ok(None);
    }
    Ok(Some(Tokenizer::from_file(&path, None)?.hash()))
}

/// Where a starting checkpoint sits in token time: its own tokens plus those
/// its run started from (read from `RUN/run.json` two levels up, when present);
/// for an upcycled folder, those of the dense model it was made from.
fn tokens_before(ckpt: &Path) -> u64 {
    tokens_before_depth(ckpt, 0)
}

fn tokens_before_depth(ckpt: &Path, depth: usize) -> u64 {
    let upcycled_from = std::fs::read_to_string(ckpt.join(UPCYCLE_FILE))
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .and_then(|v| v["source"].as_str().map(PathBuf::from));
    if let Some(source) = upcycled_from {
        // A chain of folders pointing at each other must not recurse forever.
        return if depth < 16 {
            tokens_before_depth(&source, depth + 1)
        } else {
            0
        };
    }
    let own = TrainerState::load(ckpt).map(|s| s.tokens).unwrap_or(0);
    let parent = ckpt
        .parent()
        .and_then(Path::parent)
        .map(|run| run.join(RUN_FILE))
        .and_then(|p| std::fs::read_to_string(p).ok())
        .and_then(|t| serde_json::from_str::<RunInfo>(&t).ok())
        .map_or(0, |r| r.cpt_start_tokens);
    own + parent
}

/// Fills in what the config leaves to the data: the model config (a preset
/// takes the dataset's vocabulary; a CPT run takes its checkpoint's model),
/// absolute data and init paths, and the validation domains.
fn resolve(mut cfg: RunConfig, dataset: &Dataset, init_model: Option<&Decoder>) -> Result<RunConfig> {
    let vocab = dataset.vocab_size() as usize;
    let model_cfg = match init_model {
        Some(m) => {
            if cfg.model.preset.is_some() || cfg.model.config.is_some() {
                let named = cfg.model.resolve(Some(vocab))?;
                if &named != m.config() {
                    return Err(TrainError::config(
                        "model",
                        "differs from the model of `init.from`; leave [model] out of a CPT config",
                    ));
                }
            }
            m.config().clone()
        }
        None => cfg.model.resolve(Some(vocab))?,
    };
    if model_cfg.vocab_size != vocab {
        return Err(TrainError::config(
            "model.config.vocab_size",
            format!(
                "{} differs from the dataset's vocabulary of {vocab}",
                model_cfg.vocab_size
            ),
        ));
    }
    if cfg.data.seq_len > model_cfg.max_position_embeddings {
        return Err(TrainError::config(
            "data.seq_len",
            format!(
                "{} exceeds the model's max_position_embeddings = {}",
                cfg.data.seq_len, model_cfg.max_position_embeddings
            ),
        ));
    }
    cfg.model.config = Some(model_cfg);
    cfg.data.dir = absolute(&cfg.data.dir)?;
    if let Some(init) = cfg.init.as_mut() {
        init.from = absolute(&init.from)?;
    }
    if cfg.data.val_domains.is_empty() {
        cfg.data.val_domains = dataset.domains().keys().cloned().collect();
    }
    for d in cfg.data.val_domains.iter().chain(cfg.data.mixture.keys()) {
        dataset
            .domain(d)
            .map_err(|e| TrainError::config("data", e.to_string()))?;
    }
    Ok(cfg)
}

fn absolute(p: &Path) -> Result<PathBuf> {
    std::path::absolute(p).map_err(|e| TrainError::io(p, e))
}

fn open_dataset(cfg: &RunConfig, expected_tokenizer: Option<&[u8; 32]>) -> Result<Arc<Dataset>> {
    Ok(Arc::new(Dataset::open(&cfg.data.dir, expected_tokenizer)?))
}

fn val_windows(cfg: &RunConfig, dataset: &Dataset) -> Result<Vec<ValWindows>> {
    cfg.data
        .val_domains
        .iter()
        .map(|d| Ok(ValWindows::new(dataset, d, cfg.data.seq_len, cfg.data.val_windows)?))
        .collect()
}

impl Trainer {
    /// Starts the run of `cfg` in `out`, or with `resume` continues the run in
    /// `out` from its newest complete checkpoint (using the config saved
    /// there; a given `cfg` must agree with it). Starting over a folder that
    /// already holds checkpoints without `resume` is refused. The run trains
    /// on its config's `device` (a given config's when resuming).
    pub fn start(cfg: Option<RunConfig>, out: &Path, resume: bool) -> Result<Self> {
        Self::start_on(cfg, out, resume, None)
    }

    /// [`Trainer::start`] on `device` when given (`moe train --device`),
    /// whatever the config says. A device this build or machine cannot use
    /// is a [`TrainError::DeviceUnavailable`] before any work.
    pub fn start_on(cfg: Option<RunConfig>, out: &Path, resume: bool, device: Option<Device>) -> Result<Self> {
        let on_device = |mut c: RunConfig| {
            if let Some(d) = device {
                c.device = d;
            }
            c
        };
        let cfg = cfg.map(on_device);
        let newest = latest_checkpoint(out)?;
        match (resume, newest) {
            (true, Some(ckpt)) => Self::resume(cfg, out, &ckpt, device),
            (false, Some(ckpt)) => Err(TrainError::checkpoint(
                ckpt,
                format!(
                    "{} already holds a run; pass --resume to continue it, or choose another --out",
                    out.display()
                ),
            )),
            (_, None) => {
                let cfg = match cfg {
                    Some(c) => c,
                    None if out.join(CONFIG_FILE).exists() => on_device(RunConfig::load(&out.join(CONFIG_FILE))?),
                    None => {
                        return Err(TrainError::checkpoint(
                            out,
                            "holds no checkpoint and no config.toml to resume; start the run with --config",
                        ))
                    }
                };
                Self::fresh(cfg, out)
            }
        }
    }

    fn fresh(cfg: RunConfig, out: &Path) -> Result<Self> {
        cfg.validate()?;
        check_device(&cfg.device)?;
        std::fs::create_dir_all(out).map_err(|e| TrainError::io(out, e))?;
        let dev = cfg.device;
        let mut rng = Rng::seed(cfg.seed);
        let (model, dataset, cfg, init_state) = match cfg.init.clone() {
            Some(init) => {
                let hash = folder_tokenizer_hash(&init.from)?;
                let dataset = open_dataset(&cfg, hash.as_ref())?;
                let model = moe_model::load_model_dir(&init.from, &dev)?;
                let cfg = resolve(cfg, &dataset, Some(&model))?;
                let parent = TrainerState::load(&init.from).ok();
                (model, dataset, cfg, parent)
            }
            None => {
                let dataset = open_dataset(&cfg, None)?;
                let cfg = resolve(cfg, &dataset, None)?;
                let model_cfg = cfg.model.config.clone().expect("resolve fills the model");
                (Decoder::new(&model_cfg, &mut rng, &dev)?, dataset, cfg, None)
            }
        };
        let mut optimizer = AdamW::new(model.params(), cfg.optimizer.clone())?;
        if let Some(init) = cfg.init.as_ref() {
            if let Some(parent) = &init_state {
                restore_expert_biases(&model, &parent.expert_bias, &init.from)?;
            }
            if init.keep_optimizer {
                let path = init.from.join(OPTIMIZER_FILE);
                if !path.exists() {
                    return Err(TrainError::checkpoint(
                        &init.from,
                        "has no optimizer.safetensors; set init.keep_optimizer = false (or --reset-optimizer)",
                    ));
                }
                // Read on the host; load_state_dict copies the moments to the model's device.
                optimizer.load_state_dict(&moe_tensor::safetensors::load(&path, &Device::Cpu)?)?;
            }
        }
        let mixture = Mixture::new(cfg.data.mixture.clone())?;
        let sampler_cfg = SamplerConfig {
            batch_size: cfg.data.micro_batch,
            seq_len: cfg.data.seq_len,
            seed: cfg.seed,
        };
        let sampler = Sampler::new(dataset.clone(), mixture, sampler_cfg)?;
        let info = RunInfo {
            name: cfg.name.clone(),
            init_from: cfg.init.as_ref().map(|i| i.from.clone()),
            cpt_start_tokens: cfg.init.as_ref().map_or(0, |i| tokens_before(&i.from)),
            version: version(),
        };
        write_atomic(&out.join(CONFIG_FILE), cfg.to_toml().as_bytes())?;
        let info_json = serde_json::to_string_pretty(&info).map_err(|e| TrainError::checkpoint(out, e.to_string()))?;
        write_atomic(&out.join(RUN_FILE), info_json.as_bytes())?;
        let log = MetricsLog::create(out)?;
        Self::assemble(cfg, out, dataset, model, optimizer, sampler, log, rng, None)
    }

    fn resume(given: Option<RunConfig>, out: &Path, ckpt: &Path, device: Option<Device>) -> Result<Self> {
        let state = TrainerState::load(ckpt)?;
        let mut cfg = state.config.clone();
        // Where this process trains is not part of the run: a given config's
        // device (with --device applied) or --device wins over the saved one.
        if let Some(d) = given.as_ref().map(|g| g.device).or(device) {
            cfg.device = d;
        }
        check_device(&cfg.device)?;
        let dev = cfg.device;
        let dataset = open_dataset(&cfg, folder_tokenizer_hash(ckpt)?.as_ref())?;
        let model = moe_model::load_model_dir(ckpt, &dev)?;
        if Some(model.config()) != cfg.model.config.as_ref() {
            return Err(TrainError::checkpoint(ckpt, "its model differs from the run config's"));
        }
        if let Some(given) = given {
            // A CPT run's config names no model: it resolves to the checkpoint's.
            let given = resolve(given, &dataset, cfg.init.as_ref().map(|_| &model))?;
            if !given.same_run(&cfg) {
                return Err(TrainError::config(
                    "config",
                    format!(
                        "differs from the one the run in {} started with ({}); resume without --config or with the same file",
                        out.display(),
                        out.join(CONFIG_FILE).display()
                    ),
                ));
            }
        }
        restore_expert_biases(&model, &state.expert_bias, ckpt)?;
        let mut optimizer = AdamW::new(model.params(), cfg.optimizer.clone())?;
        optimizer.load_state_dict(&moe_tensor::safetensors::load(ckpt.join(OPTIMIZER_FILE), &Device::Cpu)?)?;
        let sampler = Sampler::from_state(dataset.clone(), &state.sampler)?;
        let log = MetricsLog::resume(out, state.step)?;
        let rng = Rng::from_state(state.rng);
        Self::assemble(cfg, out, dataset, model, optimizer, sampler, log, rng, Some(&state))
    }

    #[allow(clippy::too_many_arguments)]
    fn assemble(
        cfg: RunConfig,
        out: &Path,
        dataset: Arc<Dataset>,
        model: Decoder,
        optimizer: AdamW,
        sampler: Sampler,
        log: MetricsLog,
        rng: Rng,
        state: Option<&TrainerState>,
    ) -> Result<Self> {
        let val = val_windows(&cfg, &dataset)?;
        let flops_per_token = training_flops_per_token(model.config(), cfg.data.seq_len);
        let mut domain_tokens: BTreeMap<String, u64> = cfg.data.mixture.keys().map(|k| (k.clone(), 0)).collect();
        if let Some(s) = state {
            domain_tokens = s.domain_tokens.clone();
        }
        Ok(Self {
            run_dir: out.to_path_buf(),
            dataset,
            model,
            optimizer,
            sampler,
            val,
            log,
            rng,
            step: state.map_or(0, |s| s.step),
            tokens: state.map_or(0, |s| s.tokens),
            flops: state.map_or(0.0, |s| s.flops),
            skipped: state.map_or(0, |s| s.skipped_steps),
            domain_tokens,
            flops_per_token,
            cfg,
        })
    }
}
