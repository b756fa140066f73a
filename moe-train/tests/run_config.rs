//! Run configs: the shipped presets parse, and bad configs are refused with a
//! message that names the field.

mod common;

use moe_train::config::preset_config;
use moe_train::{RunConfig, TrainError};
use std::path::{Path, PathBuf};

const GOOD: &str = r#"
name = "t"
[model]
preset = "tiny-dense"
[data]
dir = "data"
mixture = { english = 1.0 }
seq_len = 64
micro_batch = 4
[train]
tokens = 10000
[schedule]
kind = "cosine"
max_lr = 1e-3
min_lr = 1e-4
"#;

/// `text` with its [model] replaced by an inline `[model.config]`.
fn with_inline_model(text: &str, m: &moe_model::ModelConfig) -> String {
    let mut t: toml::Table = text.parse().unwrap();
    let mut model = toml::Table::new();
    model.insert("config".into(), toml::Value::try_from(m).unwrap());
    t.insert("model".into(), toml::Value::Table(model));
    toml::to_string(&t).unwrap()
}

fn err(text: &str) -> String {
    RunConfig::from_toml(text, Path::new("run.toml"))
        .unwrap_err()
        .to_string()
}

#[test]
fn derived_schedule_steps_come_from_the_token_budget() {
    let c = RunConfig::from_toml(GOOD, Path::new("run.toml")).unwrap();
    // 10000 tokens in steps of 4 · 64 = 256 tokens: 40 steps (rounded up), warmup 1%.
    assert_eq!(c.total_steps(), 40);
    assert_eq!(
        c.schedule,
        moe_train::schedule::ScheduleConfig::Cosine {
            max_lr: 1e-3,
            min_lr: 1e-4,
            warmup_steps: 1,
            total_steps: 40
        }
    );
    // The resolved config reads back as itself.
    assert_eq!(RunConfig::from_toml(&c.to_toml(), Path::new("x")).unwrap(), c);
}

#[test]
fn unknown_fields_wrong_types_and_impossible_values_name_the_field() {
    let e = err(&GOOD.replace("micro_batch", "micro_bach"));
    assert!(e.contains("micro_bach") && e.contains("run.toml"), "{e}");
    let e = err(&GOOD.replace("seq_len = 64", "seq_len = \"long\""));
    assert!(e.contains("seq_len") && e.contains("invalid type"), "{e}");
    let e = err(&GOOD.replace("max_lr = 1e-3", "max_lr = 1e-3\nwarmup = 3"));
    assert!(e.contains("warmup"), "{e}");
    // top-k larger than the expert count, in an inline model config.
    let mut m = preset_config("debug-switch").unwrap();
    m.moe.as_mut().unwrap().router.top_k = 9;
    let e = err(&with_inline_model(GOOD, &m));
    assert!(e.contains("model.config.moe.router.top_k"), "{e}");
    for (from, to, field) in [
        ("seq_len = 64", "seq_len = 100000", "data.seq_len"),
        ("micro_batch = 4", "micro_batch = 0", "data.micro_batch"),
        ("english = 1.0", "english = -1.0", "data.mixture"),
        ("tokens = 10000", "tokens = 0", "train.tokens"),
        ("min_lr = 1e-4", "min_lr = 1e-2", "schedule."),
        ("preset = \"tiny-dense\"", "preset = \"huge\"", "model.preset"),
    ] {
        let e = err(&GOOD.replace(from, to));
        assert!(e.contains(field), "{from} -> {to}: {e}");
    }
    let e = err(&GOOD.replace("tokens = 10000", ""));
    assert!(e.contains("train.tokens"), "{e}");
}

#[test]
fn precision_is_f32_by_default_bf16_on_request_and_nothing_else() {
    use moe_train::config::Precision;
    let c = RunConfig::from_toml(GOOD, Path::new("run.toml")).unwrap();
    assert_eq!(c.train.precision, Precision::F32);
    assert!(!c.to_toml().contains("precision"), "the default is not written out");
    let bf = GOOD.replace("tokens = 10000", "tokens = 10000\nprecision = \"bf16\"");
    let c = RunConfig::from_toml(&bf, Path::new("run.toml")).unwrap();
    assert_eq!(c.train.precision, Precision::Bf16);
    assert_eq!(RunConfig::from_toml(&c.to_toml(), Path::new("x")).unwrap(), c);
    let e = err(&GOOD.replace("tokens = 10000", "tokens = 10000\nprecision = \"fp8\""));
    assert!(e.contains("precision") && e.contains("fp8"), "{e}");
}

#[test]
fn a_preset_takes_the_datasets_vocabulary_an_inline_config_must_match_it() {
    let tmp = tempfile::tempdir().unwrap();
    let data = common::dataset(tmp.path());
    let text = common::config_text(
        &data,
        "tiny-dense",
        "[train]\nsteps = 1\n[schedule]\nkind = \"constant\"\nlr = 1e-3\n",
    );
    let t = moe_train::Trainer::start(Some(common::config(&text)), &tmp.path().join("a"), false).unwrap();
    assert_eq!(t.model().config().vocab_size, 384);
    let mut inline = preset_config("tiny-dense").unwrap();
    inline.vocab_size = 500;
    let text = with_inline_model(&text, &inline);
    let e = match moe_train::Trainer::start(Some(common::config(&text)), &tmp.path().join("b"), false) {
        Err(e) => e,
        Ok(_) => panic!("a vocabulary mismatch must be refused"),
    };
    assert!(
        matches!(&e, TrainError::InvalidConfig { field, .. } if field == "model.config.vocab_size"),
        "{e}"
    );
}

#[test]
fn every_shipped_preset_file_parses_and_validates() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../presets");
    let mut n = 0;
    for scale in ["tiny", "small", "paper"] {
        for family in moe_train::config::FAMILIES {
            let path = root.join(scale).join(format!("{}.toml", family.name()));
            let c = RunConfig::load(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert_eq!(
                c.model.preset.as_deref(),
                Some(format!("{scale}-{}", family.name()).as_str())
            );
            n += 1;
        }
    }
    assert_eq!(n, 15);
    let cpt = RunConfig::load_unvalidated(&root.join("cpt.toml")).unwrap();
    assert!(cpt.model.preset.is_none() && cpt.model.config.is_none());
}
