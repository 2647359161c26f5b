//! The C library check: which glibc the machine runs (from `ldd --version`), and
//! whether musl is installed, whose resolver behaves differently.

use std::path::Path;
use std::process::Command;

use super::{Finding, Severity};

/// Before 2.20, glibc's send_dg could reuse a closed file descriptor
/// (CVE-2013-7423, sourceware bug 15946), so getaddrinfo could send its query on
/// the wrong socket and wait on one that never answers.
pub const FIRST_SAFE: (u32, u32) = (2, 20);

/// Where the glibc version comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GlibcSource {
    /// Run this program with `--version` and read its first line (normally `ldd`).
    Ldd(String),
    /// A version given on the command line, e.g. "2.36", for tests or other hosts.
    Version(String),
}

/// The version at the end of `ldd --version`'s first line:
/// "ldd (Debian GLIBC 2.36-9+deb12u4) 2.36" → (2, 36).
pub fn parse_ldd_line(line: &str) -> Option<(u32, u32)> {
    parse_version(line.split_whitespace().last()?)
}

/// "2.36" or "2.36.1" → (2, 36).
pub fn parse_version(text: &str) -> Option<(u32, u32)> {
    let mut parts = text.split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

/// The glibc finding, and the musl one when `musl_dir` holds musl's dynamic linker.
pub fn check(source: &GlibcSource, musl_dir: &Path) -> Vec<Finding> {
    let mut findings = Vec::new();
    let musl = musl_loader(musl_dir);
    let line = match source {
        GlibcSource::Version(version) => Ok(version.clone()),
        GlibcSource::Ldd(program) => first_line_of_version(program),
    };
    match line {
        Ok(line) => findings.push(glibc_finding(&line)),
        // musl's ldd prints no glibc version; the musl finding says enough.
        Err(_) if musl.is_some() => {}
        Err(reason) => findings.push(Finding::new(
            "glibc",
            Severity::Info,
            "glibc version unknown".to_owned(),
            format!("{reason}. Pass --glibc-version X.Y to check a known version."),
        )),
    }
    if let Some(loader) = musl {
        findings.push(Finding::new(
            "musl",
            Severity::Info,
            format!("musl is installed ({loader})"),
            "Programs linked with musl resolve differently from glibc: they query every \
             nameserver in parallel and take the first answer, ignore \"rotate\", honour \
             ndots and search, and fall back to TCP for truncated answers only since musl \
             1.2.4. Put only punctual in resolv.conf so that musl programs use it too."
                .to_owned(),
        ));
    }
    findings
}

fn glibc_finding(line: &str) -> Finding {
    match parse_ldd_line(line) {
        Some(version) if version < FIRST_SAFE => Finding::new(
            "glibc",
            Severity::Warn,
            format!(
                "glibc {}.{} is older than 2.20 ({line})",
                version.0, version.1
            ),
            "glibc before 2.20 could reuse a closed socket in its resolver (CVE-2013-7423, \
             sourceware bug 15946): getaddrinfo may send on the wrong socket and wait \
             forever for the reply. No resolver on the other side can fix that; upgrade \
             glibc."
                .to_owned(),
        ),
        Some(version) => Finding::new(
            "glibc",
            Severity::Ok,
            format!("glibc {}.{} ({line})", version.0, version.1),
            "The system resolver honours resolv.conf's timeout and attempts.".to_owned(),
        ),
        None => Finding::new(
            "glibc",
            Severity::Info,
            "glibc version unknown".to_owned(),
            format!("Cannot read a version from {line:?}."),
        ),
    }
}

fn first_line_of_version(program: &str) -> Result<String, String> {
    let output = Command::new(program)
        .arg("--version")
        .output()
        .map_err(|error| format!("cannot run {program} --version: {error}"))?;
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .next()
        .map(str::to_owned)
        .filter(|line| !line.trim().is_empty())
        .ok_or_else(|| format!("{program} --version printed nothing on stdout"))
}

/// The name of musl's dynamic linker (`ld-musl-ARCH.so.1`) in `dir`, if there is one.
fn musl_loader(dir: &Path) -> Option<String> {
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(Result::ok)
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .find(|name| name.starts_with("ld-musl-") && name.ends_with(".so.1"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn real_first_lines() {
        let cases = [
            ("ldd (Debian GLIBC 2.36-9+deb12u4) 2.36", (2, 36)),
            ("ldd (Ubuntu GLIBC 2.35-0ubuntu3.6) 2.35", (2, 35)),
            ("ldd (GNU libc) 2.38", (2, 38)),
            ("ldd (GNU libc) 2.17", (2, 17)),
        ];
        for (line, version) in cases {
            assert_eq!(parse_ldd_line(line), Some(version), "{line}");
        }
        assert_eq!(parse_ldd_line("musl libc (x86_64)"), None);
        assert_eq!(parse_ldd_line(""), None);
    }

    #[test]
    fn old_glibc_warns() {
        let old = glibc_finding("ldd (GNU libc) 2.17");
        assert_eq!(old.severity, Severity::Warn);
        assert!(old.detail.contains("CVE-2013-7423"), "{}", old.detail);
        assert_eq!(glibc_finding("ldd (GNU libc) 2.20").severity, Severity::Ok);
        assert_eq!(glibc_finding("2.36").severity, Severity::Ok);
        assert_eq!(glibc_finding("2.19").severity, Severity::Warn);
    }

    #[test]
    fn musl_detected_by_its_loader() {
        let dir = std::env::temp_dir().join(format!("punctual-musl-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let source = GlibcSource::Version("2.36".to_owned());
        assert!(check(&source, &dir).iter().all(|f| f.check != "musl"));
        std::fs::write(dir.join("ld-musl-x86_64.so.1"), b"").expect("write");
        let findings = check(&source, &dir);
        std::fs::remove_dir_all(&dir).expect("cleanup");
        let musl = findings.iter().find(|f| f.check == "musl").expect("musl");
        assert_eq!(musl.severity, Severity::Info);
        assert!(musl.title.contains("ld-musl-x86_64.so.1"));
    }
}
