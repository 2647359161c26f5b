//! `[query_log]`: the optional log of every query, one JSON line each, written
//! off the query path (see [`crate::query_log`]); its keys and their rules.

use std::path::PathBuf;

use serde::Deserialize;

use super::{Config, ConfigError, value};

/// A queue longer than this is a typo: a million waiting lines is already
/// hundreds of megabytes that a stalled disk would hold in memory.
const MAX_QUEUE: usize = 1_000_000;

/// `[query_log]`: off unless `path` is set.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QueryLogConfig {
    /// The file lines are appended to (created if missing, mode 0640). Default
    /// none (written `""`): no query log.
    #[serde(deserialize_with = "value::optional_path")]
    pub path: Option<PathBuf>,
    /// Lines waiting to be written at most; a query finding the queue full is
    /// not logged, and `query_log_dropped` counts it. Default 10000.
    #[serde(deserialize_with = "value::count")]
    pub queue: usize,
}

impl Default for QueryLogConfig {
    fn default() -> Self {
        QueryLogConfig {
            path: None,
            queue: 10_000,
        }
    }
}

impl Config {
    /// `[query_log]`: a queue of 1 to [`MAX_QUEUE`] lines, and a file whose
    /// directory exists (checked here so that `check` catches it; the file is
    /// opened when the server starts).
    pub(super) fn validate_query_log(&self) -> Result<(), ConfigError> {
        let log = &self.query_log;
        if log.queue == 0 || log.queue > MAX_QUEUE {
            return Err(self.invalid(
                &[self.key("query_log.queue", |config| &config.query_log.queue)],
                format!(
                    "query_log.queue must be at least 1 and at most {MAX_QUEUE}, got {}",
                    log.queue
                ),
            ));
        }
        if let Some(path) = &log.path {
            let key = self.key("query_log.path", |config| &config.query_log.path);
            if !path.is_absolute() {
                return Err(self.invalid(
                    &[key],
                    format!(
                        "query_log.path must be an absolute path, got {}",
                        path.display()
                    ),
                ));
            }
            if let Some(directory) = path.parent()
                && !directory.is_dir()
            {
                return Err(self.invalid(
                    &[key],
                    format!(
                        "query_log.path: directory {} does not exist",
                        directory.display()
                    ),
                ));
            }
        }
        Ok(())
    }
}
