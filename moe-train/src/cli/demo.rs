//! `moe demo`: the whole study in miniature, offline, with one progress display.

use anyhow::Result;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use moe_train::demo::plan::{all_families, DemoSize};
use moe_train::demo::{run_demo, DemoEvent, DemoOptions};
use std::io::IsTerminal;
use std::path::PathBuf;

/// Arguments of `moe demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// The demo folder (data/, runs/, report/); re-running continues it.
    #[arg(long, default_value = "moe-demo")]
    pub out: PathBuf,
    /// A smaller demo (under two minutes; what the tests run).
    #[arg(long, conflicts_with = "scale")]
    pub quick: bool,
    /// Multiply the default token budgets (e.g. 4 for a longer, clearer demo).
    #[arg(long)]
    pub scale: Option<f64>,
}

/// Runs `moe demo`.
pub fn run(args: DemoArgs) -> Result<()> {
    let size = if args.quick {
        DemoSize::quick()
    } else {
        let s = args.scale.unwrap_or(1.0);
        anyhow::ensure!(s.is_finite() && s > 0.0, "--scale must be a positive number, got {s}");
        DemoSize::standard(s)
    };
    let opts = DemoOptions {
        out: args.out.clone(),
        size,
        families: all_families(),
    };
    let tty = std::io::stderr().is_terminal();
    let bar = if tty {
        ProgressBar::new(1)
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template("[{elapsed_precise}<{eta_precise}] {wide_bar} {pos}/{len} steps {msg}")
            .expect("valid template"),
    );
    let summary = run_demo(&opts, &mut |e| match e {
        DemoEvent::Phase(p) => {
            if tty {
                bar.println(&p);
            } else {
                eprintln!("{p}");
            }
        }
        DemoEvent::Step {
            run,
            record,
            done,
            total,
        } => {
            bar.set_length(total);
            bar.set_position(done);
            bar.set_message(format!("{run} loss {:.3}", record.loss));
        }
    })?;
    bar.finish_and_clear();
    println!("{:<32} {:>10} {:>10}", "run", "loss A", "loss B");
    for (name, losses) in &summary.final_loss {
        let get = |d: &str| losses.get(d).copied().unwrap_or(f64::NAN);
        println!(
            "{name:<32} {:>10.4} {:>10.4}",
            get(moe_train::demo::plan::DOMAIN_A),
            get(moe_train::demo::plan::DOMAIN_B)
        );
    }
    println!("report: {}", summary.report.join("report.md").display());
    Ok(())
}
