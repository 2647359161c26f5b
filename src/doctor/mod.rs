//! `punctual doctor`: checks the machine punctual runs on and says what to fix.
//! Each check yields [`Finding`]s; [`diagnose`] runs them all against [`Inputs`],
//! every one of which can point at a fixture instead of the live system.
//!
//! - [`glibc`]: the C library's version and musl.
//! - [`resolv`]: resolv.conf's nameservers and options, and the worst-case wait.
//! - [`port53`]: who holds punctual's listen addresses; other DNS servers here.
//! - [`probe`]: whether punctual and its upstreams answer.

pub mod glibc;
pub mod port53;
pub mod probe;
pub mod resolv;

use std::fmt::Write as _;
use std::path::PathBuf;

use serde::Serialize;

use crate::config::Config;
pub use glibc::GlibcSource;
pub use probe::Probe;

/// How much a finding needs attention. Only warn and error do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Ok,
    Info,
    Warn,
    Error,
}

impl Severity {
    pub const fn name(self) -> &'static str {
        match self {
            Severity::Ok => "ok",
            Severity::Info => "info",
            Severity::Warn => "warn",
            Severity::Error => "error",
        }
    }
}

/// One result: which check, how bad, a one-line title and what to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// A stable id such as "resolv.first" or "upstream", for scripts and tests.
    pub check: &'static str,
    pub severity: Severity,
    pub title: String,
    pub detail: String,
}

impl Finding {
    pub fn new(check: &'static str, severity: Severity, title: String, detail: String) -> Self {
        Finding {
            check,
            severity,
            title,
            detail,
        }
    }
}

/// Everything doctor reads, each overridable.
#[derive(Debug, Clone)]
pub struct Inputs {
    /// punctual's config: listen addresses, upstreams, deadline.
    pub config: Config,
    /// The resolv.conf programs on this machine use.
    pub resolv_conf: PathBuf,
    pub glibc: GlibcSource,
    /// Where musl's dynamic linker would be (`ld-musl-*.so.1`).
    pub musl_dir: PathBuf,
    /// The procfs root for the port-53 check.
    pub proc_root: PathBuf,
    pub probe: Probe,
}

/// Every finding, in check order.
#[derive(Debug, Clone, Serialize)]
#[serde(transparent)]
pub struct Report {
    pub findings: Vec<Finding>,
}

/// Runs every check. The queries of the probe check go out together.
pub async fn diagnose(inputs: &Inputs) -> Report {
    let mut findings = glibc::check(&inputs.glibc, &inputs.musl_dir);
    findings.extend(resolv::check(&inputs.resolv_conf, &inputs.config));
    findings.extend(port53::check(&inputs.proc_root, &inputs.config));
    findings.extend(probe::check(&inputs.probe, &inputs.config).await);
    Report { findings }
}

impl Report {
    /// Whether any finding is a warning or an error (doctor then exits 1).
    pub fn needs_attention(&self) -> bool {
        self.findings
            .iter()
            .any(|finding| finding.severity >= Severity::Warn)
    }

    /// The findings with this check id.
    pub fn of(&self, check: &str) -> Vec<&Finding> {
        self.findings
            .iter()
            .filter(|finding| finding.check == check)
            .collect()
    }

    /// One line per finding, its explanation indented below.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        for finding in &self.findings {
            let _ = writeln!(
                out,
                "{:<5}  {}: {}",
                finding.severity.name(),
                finding.check,
                finding.title
            );
            let _ = writeln!(out, "       {}", finding.detail);
        }
        out
    }

    /// A JSON array of {check, severity, title, detail}.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|_| "[]".to_owned())
    }
}
