//! [`Settings`]: a crawl's plain settings as data, for configuration read
//! from files, the environment or a command line, applied to a builder
//! with [`CrawlerBuilder::settings`](crate::CrawlerBuilder::settings).
//!
//! Every field is optional: a value given replaces the builder's, one left
//! out keeps it. [`Settings::load`] reads, each over the one before: a TOML
//! file, the `SPINNERET_*` environment variables (`SPINNERET_CONCURRENCY=32`
//! sets `concurrency`), then `KEY=VALUE` pairs (the command line's `-s`).

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, ErrorKind, Stage};

/// The prefix of the environment variables [`Settings::load`] reads.
pub const ENV_PREFIX: &str = "SPINNERET_";

/// A crawl's plain settings; `None` keeps the builder's value.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// [`CrawlerBuilder::concurrency`](crate::CrawlerBuilder::concurrency).
    pub concurrency: Option<usize>,
    /// [`CrawlerBuilder::per_host_concurrency`](crate::CrawlerBuilder::per_host_concurrency).
    pub per_host_concurrency: Option<usize>,
    /// [`CrawlerBuilder::user_agent`](crate::CrawlerBuilder::user_agent).
    pub user_agent: Option<String>,
}

impl Settings {
    /// The settings of `file` (TOML, if given), then the process's
    /// `SPINNERET_*` environment variables, then `overrides`
    /// (`KEY=VALUE`), each over the one before.
    pub fn load(file: Option<&Path>, overrides: &[String]) -> Result<Settings, Error> {
        Settings::load_from(file, std::env::vars(), overrides)
    }

    /// As [`load`](Self::load), with the environment given.
    pub fn load_from(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
        overrides: &[String],
    ) -> Result<Settings, Error> {
        let mut table = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| config(format!("settings file {}: {e}", path.display())))?;
                toml::from_str::<toml::Table>(&text)
                    .map_err(|e| config(format!("settings file {}: {e}", path.display())))?
            }
            None => toml::Table::new(),
        };
        for (name, value) in env {
            if let Some(key) = name.strip_prefix(ENV_PREFIX) {
                table.insert(key.to_ascii_lowercase(), value_of(&value));
            }
        }
        for pair in overrides {
            let Some((key, value)) = pair.split_once('=') else {
                return Err(config(format!("setting {pair:?}: expected KEY=VALUE")));
            };
            table.insert(key.trim().to_string(), value_of(value));
        }
        Settings::deserialize(table).map_err(|e| config(format!("settings: {e}")))
    }

    /// Sets every value `over` holds, keeping the others.
    pub fn merge(&mut self, over: &Settings) {
        if over.concurrency.is_some() {
            self.concurrency = over.concurrency;
        }
        if over.per_host_concurrency.is_some() {
            self.per_host_concurrency = over.per_host_concurrency;
        }
        if over.user_agent.is_some() {
            self.user_agent.clone_from(&over.user_agent);
        }
    }
}

/// A value written as text: a TOML value when it reads as one, else the
/// text itself.
fn value_of(text: &str) -> toml::Value {
    toml::from_str::<toml::Table>(&format!("v = {text}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(text.to_string()))
}

/// A setup error with `message`.
fn config(message: String) -> Error {
    Error::new(Stage::Setup, ErrorKind::Config(message))
}
