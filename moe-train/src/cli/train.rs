//! `moe train`: run a config, resume it, or continue pre-training from a checkpoint.

use anyhow::{Context, Result};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use moe_tensor::Device;
use moe_train::config::InitConfig;
use moe_train::{Event, RunConfig, Trainer};
use std::io::IsTerminal;
use std::path::PathBuf;

/// Arguments of `moe train`.
#[derive(Debug, Args)]
pub struct TrainArgs {
    /// The run config (TOML). Optional with --resume: the run's saved config is used.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// The run folder (metrics.jsonl, checkpoints/); default `runs/<name>`.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Continue the run in --out from its newest complete checkpoint.
    #[arg(long)]
    pub resume: bool,
    /// Continual pre-training: start from this checkpoint (overrides `init.from`).
    #[arg(long, value_name = "CKPT")]
    pub init_from: Option<PathBuf>,
    /// With --init-from: keep the checkpoint's AdamW moments.
    #[arg(long, conflicts_with = "reset_optimizer")]
    pub keep_optimizer: bool,
    /// With --init-from: start AdamW's moments from zero (the default).
    #[arg(long)]
    pub reset_optimizer: bool,
    /// Train on this device: cpu, cuda or cuda:N (overrides the config's
    /// `device`; a resumed run may change device). A device this build or
    /// machine cannot use is an error before any work.
    #[arg(long, value_name = "cpu|cuda|cuda:N")]
    pub device: Option<Device>,
    /// Validate the config, print it resolved, and stop.
    #[arg(long)]
    pub dry_run: bool,
    /// No progress bar; one line per evaluation and checkpoint.
    #[arg(long)]
    pub quiet: bool,
}

/// Runs `moe train`.
pub fn run(args: TrainArgs) -> Result<()> {
    let mut cfg = match &args.config {
        Some(p) => Some(RunConfig::load_unvalidated(p)?),
        None if args.resume => None,
        None => anyhow::bail!("give --config RUN.toml (or --resume --out RUN_DIR)"),
    };
    if let Some(c) = cfg.as_mut() {
        if let Some(from) = &args.init_from {
            c.init = Some(InitConfig {
                from: from.clone(),
                keep_optimizer: false,
            });
        }
        if let Some(d) = args.device {
            c.device = d;
        }
        if let Some(init) = c.init.as_mut() {
            if args.keep_optimizer {
                init.keep_optimizer = true;
            }
            if args.reset_optimizer {
                init.keep_optimizer = false;
            }
        }
        c.validate()?;
    }
    let out = match (&args.out, &cfg) {
        (Some(o), _) => o.clone(),
        (None, Some(c)) => PathBuf::from("runs").join(&c.name),
        (None, None) => anyhow::bail!("--resume needs --out RUN_DIR"),
    };
    if args.dry_run {
        let c = cfg.context("--dry-run needs --config")?;
        print!("{}", c.to_toml());
        println!(
            "# {} optimiser steps of {} tokens",
            c.total_steps(),
            c.tokens_per_step()
        );
        return Ok(());
    }
    let mut trainer = Trainer::start_on(cfg, &out, args.resume, args.device)?;
    if let Some(note) = trainer.config().train.precision.slow_on(&trainer.config().device) {
        eprintln!("{note}");
    }
    let total = trainer.config().total_steps();
    let show_bar = !args.quiet && std::io::stderr().is_terminal();
    let bar = if show_bar {
        ProgressBar::new(total)
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template("{prefix} [{elapsed_precise}<{eta_precise}] {wide_bar} {pos}/{len} {msg}")
            .expect("valid template"),
    );
    bar.set_prefix(trainer.config().name.clone());
    bar.set_position(trainer.step());
    let quiet = args.quiet;
    let last = trainer.run(&mut |e| match e {
        Event::Step { record, .. } => {
            bar.set_position(record.step);
            bar.set_message(format!(
                "loss {:.4} lr {:.2e} {:.0} tok/s",
                record.loss, record.lr, record.tokens_per_s
            ));
        }
        Event::Val(v) => {
            let line = format!(
                "step {}: val {} loss {:.4} (ppl {:.2})",
                v.step, v.domain, v.loss, v.ppl
            );
            if show_bar {
                bar.println(line);
            } else if !quiet {
                eprintln!("{line}");
            }
        }
        Event::Checkpoint(p) => {
            if !show_bar && !quiet {
                eprintln!("checkpoint {}", p.display());
            }
        }
    })?;
    bar.finish_and_clear();
    println!("done: {} steps; final checkpoint {}", trainer.step(), last.display());
    Ok(())
}
