//! The resolv.conf checks: which nameservers glibc asks and in what order, the
//! `options` that shape a caller's wait, and the worst case of that wait.
//!
//! The rules are glibc's, as resolv.conf(5) documents them: at most three
//! nameservers (MAXNS), `timeout:n` (default 5 s, capped at 30), `attempts:n`
//! (default 2, capped at 5), `ndots:n` (default 1, capped at 15); the last
//! `search` or `domain` line wins; several `options` lines add up.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use super::{Finding, Severity};
use crate::config::Config;
use crate::config::value::DNS_PORT;
use crate::resolv_conf::parse_nameservers;

/// glibc's MAXNS: nameservers after the third are ignored.
pub const MAX_NAMESERVERS: usize = 3;
/// resolv.conf(5): `timeout` defaults to RES_TIMEOUT (5 s), capped at 30 s.
pub const DEFAULT_TIMEOUT: u32 = 5;
pub const MAX_TIMEOUT: u32 = 30;
/// resolv.conf(5): `attempts` defaults to RES_DFLRETRY (2), capped at 5.
pub const DEFAULT_ATTEMPTS: u32 = 2;
pub const MAX_ATTEMPTS: u32 = 5;
/// resolv.conf(5): `ndots` defaults to 1, capped at 15.
pub const DEFAULT_NDOTS: u32 = 1;
pub const MAX_NDOTS: u32 = 15;
/// A worst case more than this many times punctual's deadline is worth fixing.
const FAR_BEYOND_DEADLINE: u32 = 3;

/// The parts of a resolv.conf that decide what a glibc caller waits for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvConf {
    /// Every usable `nameserver`, in file order (also those beyond MAXNS).
    pub nameservers: Vec<IpAddr>,
    pub search: Vec<String>,
    pub options: ResolverOptions,
}

/// The `options` keywords of resolv.conf(5), capped where glibc caps them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolverOptions {
    pub timeout: u32,
    pub attempts: u32,
    pub ndots: u32,
    pub rotate: bool,
    pub single_request: bool,
    pub single_request_reopen: bool,
    pub use_vc: bool,
    pub trust_ad: bool,
    pub edns0: bool,
}

impl Default for ResolverOptions {
    fn default() -> Self {
        ResolverOptions {
            timeout: DEFAULT_TIMEOUT,
            attempts: DEFAULT_ATTEMPTS,
            ndots: DEFAULT_NDOTS,
            rotate: false,
            single_request: false,
            single_request_reopen: false,
            use_vc: false,
            trust_ad: false,
            edns0: false,
        }
    }
}

impl ResolvConf {
    /// Reads what glibc reads; unknown keywords and bad values are ignored, as
    /// glibc ignores them.
    pub fn parse(text: &str) -> ResolvConf {
        let nameservers = parse_nameservers(text)
            .into_iter()
            .map(|(_, ip)| ip)
            .collect();
        let mut search = Vec::new();
        let mut options = ResolverOptions::default();
        for line in text.lines() {
            let mut words = line.split_whitespace();
            match words.next() {
                // resolv.conf(5): `domain` and `search` exclude each other; the last wins.
                Some("search" | "domain") => {
                    search = words
                        .take_while(|word| !word.starts_with(['#', ';']))
                        .map(str::to_owned)
                        .collect();
                }
                Some("options") => words.for_each(|word| options.apply(word)),
                _ => {}
            }
        }
        ResolvConf {
            nameservers,
            search,
            options,
        }
    }

    /// The nameservers glibc actually asks: the first three.
    pub fn used_nameservers(&self) -> &[IpAddr] {
        &self.nameservers[..self.nameservers.len().min(MAX_NAMESERVERS)]
    }

    /// Roughly the longest a glibc lookup waits when no nameserver answers:
    /// timeout × attempts × nameservers (at most 3; none means the local host, one).
    /// With `single-request(-reopen)` the A and AAAA queries go one after the other,
    /// so twice that.
    pub fn worst_case_wait(&self) -> Duration {
        let servers = self.used_nameservers().len().max(1) as u32;
        let options = &self.options;
        // res_send: a per-try timeout of 0 is raised to 1 s.
        let each = options.timeout.clamp(1, MAX_TIMEOUT);
        let sequential = if options.single_request || options.single_request_reopen {
            2
        } else {
            1
        };
        Duration::from_secs(u64::from(
            each * options.attempts.min(MAX_ATTEMPTS) * servers * sequential,
        ))
    }

    /// How many lookups a single-label name ("db") makes before glibc gives up:
    /// one per search domain, then the name as it is; each is an A and an AAAA query.
    pub fn single_label_lookups(&self) -> usize {
        self.search.len() + 1
    }
}

impl ResolverOptions {
    fn apply(&mut self, word: &str) {
        let number = |prefix: &str, max: u32| {
            word.strip_prefix(prefix)
                .and_then(|value| value.parse::<u32>().ok())
                .map(|value| value.min(max))
        };
        if let Some(value) = number("timeout:", MAX_TIMEOUT) {
            self.timeout = value;
        } else if let Some(value) = number("attempts:", MAX_ATTEMPTS) {
            self.attempts = value;
        } else if let Some(value) = number("ndots:", MAX_NDOTS) {
            self.ndots = value;
        } else {
            match word {
                "rotate" => self.rotate = true,
                "single-request" => self.single_request = true,
                "single-request-reopen" => self.single_request_reopen = true,
                "use-vc" => self.use_vc = true,
                "trust-ad" => self.trust_ad = true,
                "edns0" => self.edns0 = true,
                _ => {}
            }
        }
    }
}

/// The resolv.conf findings for the file at `path` against punctual's `config`.
pub fn check(path: &Path, config: &Config) -> Vec<Finding> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) => {
            return vec![Finding::new(
                "resolv.conf",
                Severity::Error,
                format!("cannot read {}", path.display()),
                format!(
                    "{error}. Programs resolve names through this file; write one with \
                     \"nameserver 127.0.0.1\" pointing at punctual."
                ),
            )];
        }
    };
    let conf = ResolvConf::parse(&text);
    let is_punctual = |ip: &IpAddr| {
        config
            .own_listener(SocketAddr::new(*ip, DNS_PORT))
            .is_some()
    };
    let mut findings = vec![nameservers(path, &conf, is_punctual)];
    let punctual_first = conf.nameservers.first().is_some_and(is_punctual);
    if conf.nameservers.len() > MAX_NAMESERVERS {
        let ignored: Vec<String> = conf.nameservers[MAX_NAMESERVERS..]
            .iter()
            .map(ToString::to_string)
            .collect();
        findings.push(Finding::new(
            "resolv.maxns",
            Severity::Warn,
            format!(
                "{} nameservers; glibc uses only the first 3",
                conf.nameservers.len()
            ),
            format!(
                "glibc's MAXNS is 3 (resolv.conf(5)): {} never asked. Remove the extra lines.",
                ignored.join(", ")
            ),
        ));
    }
    let punctual_named = conf.nameservers.iter().any(is_punctual);
    findings.push(worst_case(&conf, config, punctual_first, punctual_named));
    if conf.options.rotate && conf.nameservers.iter().any(is_punctual) {
        findings.push(Finding::new(
            "resolv.rotate",
            Severity::Warn,
            "options rotate spreads lookups over every nameserver".to_owned(),
            format!(
                "With rotate, glibc starts each lookup at the next nameserver in turn, so \
                 punctual sees only 1 in {} lookups and its cache is mostly bypassed. \
                 Remove \"rotate\" from the options line.",
                conf.used_nameservers().len().max(1)
            ),
        ));
    }
    if conf.options.ndots > 1 && !conf.search.is_empty() {
        let lookups = conf.single_label_lookups();
        findings.push(Finding::new(
            "resolv.ndots",
            Severity::Info,
            format!(
                "ndots:{} with {} search domain(s)",
                conf.options.ndots,
                conf.search.len()
            ),
            format!(
                "A name with fewer than {} dots is tried with each search domain ({}) before \
                 as it is: a single-label name makes {lookups} lookups, {} queries with A and \
                 AAAA, and a missing name waits for all of them. Write names with a trailing \
                 dot, or lower ndots.",
                conf.options.ndots,
                conf.search.join(" "),
                lookups * 2
            ),
        ));
    }
    if conf.options.use_vc {
        findings.push(Finding::new(
            "resolv.use-vc",
            Severity::Info,
            "options use-vc: every lookup goes over TCP".to_owned(),
            "glibc opens a TCP connection per lookup instead of sending UDP. punctual \
             serves TCP on every listen address, so this works, at the cost of a \
             handshake per lookup."
                .to_owned(),
        ));
    }
    if let Some(finding) = other_options(&conf.options, config) {
        findings.push(finding);
    }
    findings
}

fn nameservers(path: &Path, conf: &ResolvConf, is_punctual: impl Fn(&IpAddr) -> bool) -> Finding {
    let list: Vec<String> = conf
        .nameservers
        .iter()
        .map(|ip| {
            if is_punctual(ip) {
                format!("{ip} (punctual)")
            } else {
                ip.to_string()
            }
        })
        .collect();
    let file = path.display();
    match conf.nameservers.first() {
        None => Finding::new(
            "resolv.first",
            Severity::Warn,
            format!("{file} names no nameserver"),
            "glibc then asks 127.0.0.1:53 (resolv.conf(5)). Add \"nameserver 127.0.0.1\" \
             as the first line so that it is explicit."
                .to_owned(),
        ),
        Some(first) if is_punctual(first) => Finding::new(
            "resolv.first",
            Severity::Ok,
            format!("punctual is the first nameserver: {}", list.join(", ")),
            format!("glibc asks {first} first; lookups go through punctual's cache and deadline."),
        ),
        Some(_) if conf.nameservers.iter().any(&is_punctual) => Finding::new(
            "resolv.first",
            Severity::Warn,
            format!("punctual is not the first nameserver: {}", list.join(", ")),
            "glibc asks nameservers in order and moves on only after a timeout, so lookups \
             reach punctual only when the servers before it fail. Put punctual's \
             nameserver line first."
                .to_owned(),
        ),
        Some(_) => Finding::new(
            "resolv.first",
            Severity::Warn,
            format!("{file} does not name punctual: {}", list.join(", ")),
            "Programs on this machine do not use punctual. Put \"nameserver\" with one of \
             punctual's port-53 listen addresses first (a resolv.conf cannot name another \
             port)."
                .to_owned(),
        ),
    }
}

fn worst_case(
    conf: &ResolvConf,
    config: &Config,
    punctual_first: bool,
    punctual_named: bool,
) -> Finding {
    let options = &conf.options;
    let wait = conf.worst_case_wait();
    let deadline = config.limits.deadline;
    let human = |duration: Duration| humantime::format_duration(duration).to_string();
    let sequential = if options.single_request || options.single_request_reopen {
        " × 2 (single-request: A then AAAA)"
    } else {
        ""
    };
    let arithmetic = format!(
        "timeout:{} × attempts:{} × {} nameserver(s){sequential} = {}",
        options.timeout.max(1),
        options.attempts,
        conf.used_nameservers().len().max(1),
        human(wait)
    );
    let too_long = wait > deadline * FAR_BEYOND_DEADLINE;
    let (severity, title, advice) = if !punctual_first {
        let when = if punctual_named {
            "before punctual is asked"
        } else {
            "when the nameservers are silent"
        };
        (
            Severity::Warn,
            format!("a lookup can wait up to {} {when}", human(wait)),
            "Put punctual first: it answers every query within its deadline.".to_owned(),
        )
    } else if too_long {
        (
            Severity::Warn,
            format!(
                "a lookup can wait up to {} if punctual stops, {}× its {} deadline",
                human(wait),
                wait.as_secs_f64() / deadline.as_secs_f64(),
                human(deadline)
            ),
            format!(
                "While punctual runs, callers get an answer within {}; if it stops, they \
                 wait the worst case. Set \"options timeout:2 attempts:2\" to bound that.",
                human(deadline)
            ),
        )
    } else {
        (
            Severity::Ok,
            format!("a lookup waits at most {} in the worst case", human(wait)),
            format!(
                "punctual answers within its {} deadline; the worst case applies only if \
                 it stops.",
                human(deadline)
            ),
        )
    };
    Finding::new(
        "resolv.worst-case",
        severity,
        title,
        format!("glibc gives up after {arithmetic}. {advice}"),
    )
}

/// One note on the options that change what punctual sees but not how long callers wait.
fn other_options(options: &ResolverOptions, config: &Config) -> Option<Finding> {
    let mut notes = Vec::new();
    if options.single_request {
        notes.push("single-request: A and AAAA are sent one after the other, not in parallel");
    }
    if options.single_request_reopen {
        notes.push(
            "single-request-reopen: as single-request, with a new socket for the second query",
        );
    }
    if options.edns0 {
        notes.push("edns0: queries carry EDNS(0) (RFC 6891); punctual answers with it");
    }
    if options.trust_ad {
        notes.push(if config.upstream.trust_ad {
            "trust-ad: glibc passes on the AD bit; punctual relays it ([upstream] trust_ad)"
        } else {
            "trust-ad: glibc passes on the AD bit, but punctual clears it unless [upstream] \
             trust_ad = true"
        });
    }
    (!notes.is_empty()).then(|| {
        Finding::new(
            "resolv.options",
            Severity::Info,
            "other resolver options".to_owned(),
            notes.join("; "),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conf(text: &str) -> ResolvConf {
        ResolvConf::parse(text)
    }

    #[test]
    fn defaults() {
        let parsed = conf("nameserver 192.0.2.1\n");
        assert_eq!(parsed.options, ResolverOptions::default());
        assert_eq!(parsed.worst_case_wait(), Duration::from_secs(10));
    }

    #[test]
    fn three_servers_times_timeout_times_attempts() {
        let parsed = conf(
            "nameserver 192.0.2.1\nnameserver 192.0.2.2\nnameserver 192.0.2.3\n\
             options timeout:5 attempts:2\n",
        );
        assert_eq!(parsed.worst_case_wait(), Duration::from_secs(30));
    }

    #[test]
    fn capped_at_glibc_limits() {
        let parsed = conf("nameserver 192.0.2.1\noptions timeout:99 attempts:9 ndots:40\n");
        assert_eq!(parsed.options.timeout, MAX_TIMEOUT);
        assert_eq!(parsed.options.attempts, MAX_ATTEMPTS);
        assert_eq!(parsed.options.ndots, MAX_NDOTS);
        assert_eq!(parsed.worst_case_wait(), Duration::from_secs(150));
    }

    #[test]
    fn more_than_three_count_as_three() {
        let text = (1..=5)
            .map(|n| format!("nameserver 192.0.2.{n}\n"))
            .collect::<String>()
            + "options timeout:1 attempts:1\n";
        let parsed = conf(&text);
        assert_eq!(parsed.nameservers.len(), 5);
        assert_eq!(parsed.used_nameservers().len(), 3);
        assert_eq!(parsed.worst_case_wait(), Duration::from_secs(3));
    }

    #[test]
    fn no_nameserver_means_the_local_one() {
        assert_eq!(conf("").worst_case_wait(), Duration::from_secs(10));
    }

    #[test]
    fn single_request_doubles() {
        let parsed = conf("nameserver 192.0.2.1\noptions single-request timeout:2\n");
        assert_eq!(parsed.worst_case_wait(), Duration::from_secs(8));
    }

    #[test]
    fn options_lines_add_up_and_flags_parse() {
        let parsed = conf(
            "options rotate timeout:3\noptions use-vc trust-ad edns0 single-request-reopen \
             bogus attempts:x\nsearch a.example b.example # comment\n",
        );
        let options = &parsed.options;
        assert_eq!((options.timeout, options.attempts), (3, DEFAULT_ATTEMPTS));
        assert!(options.rotate && options.use_vc && options.trust_ad && options.edns0);
        assert!(options.single_request_reopen && !options.single_request);
        assert_eq!(parsed.search, ["a.example", "b.example"]);
        assert_eq!(parsed.single_label_lookups(), 3);
    }

    #[test]
    fn last_search_or_domain_wins() {
        let parsed = conf("search a.example b.example\ndomain c.example\n");
        assert_eq!(parsed.search, ["c.example"]);
    }
}
