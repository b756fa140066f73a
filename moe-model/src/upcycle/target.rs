//! The target config of an upcycling run: a preset name, or a file holding a
//! [`ModelConfig`] in TOML (or JSON, by the `.json` extension).

use crate::presets::{preset, PRESETS};
use crate::{Error, ModelConfig, Result};
use std::path::Path;

/// The config named by `spec`: one of [`PRESETS`], or the path of a TOML
/// (`.json`: JSON) file holding a [`ModelConfig`]; validated.
pub fn target_config(spec: &str) -> Result<ModelConfig> {
    if PRESETS.contains(&spec) {
        return preset(spec);
    }
    let path = Path::new(spec);
    let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let json = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("json"));
    let cfg: ModelConfig = if json {
        serde_json::from_str(&text).map_err(|e| Error::Json {
            path: path.to_path_buf(),
            msg: e.to_string(),
        })?
    } else {
        toml::from_str(&text).map_err(|e| Error::Json {
            path: path.to_path_buf(),
            msg: e.to_string(),
        })?
    };
    cfg.validate().map_err(|e| match e {
        Error::Config { field, msg } => Error::Config {
            field: format!("{}: {field}", path.display()),
            msg,
        },
        other => other,
    })?;
    Ok(cfg)
}
