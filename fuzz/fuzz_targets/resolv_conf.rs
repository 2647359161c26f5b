//! Any text as a resolv.conf: the nameserver parser punctual follows and the
//! doctor's reading of nameservers, search and options never panic, and what
//! they return stays within glibc's bounds.

#![no_main]

use libfuzzer_sys::fuzz_target;
use punctual::doctor::resolv::{self, ResolvConf};
use punctual::resolv_conf::parse_nameservers;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let nameservers = parse_nameservers(&text);
    let lines = text.lines().count();
    for (line, ip) in &nameservers {
        assert!((1..=lines).contains(line), "line {line} of {lines}");
        assert!(!ip.is_unspecified(), "{ip} is not a destination");
    }
    let conf = ResolvConf::parse(&text);
    assert_eq!(conf.nameservers.len(), nameservers.len());
    assert!(conf.used_nameservers().len() <= resolv::MAX_NAMESERVERS);
    let options = &conf.options;
    assert!(options.timeout <= resolv::MAX_TIMEOUT);
    assert!(options.attempts <= resolv::MAX_ATTEMPTS);
    assert!(options.ndots <= resolv::MAX_NDOTS);
    let _ = conf.worst_case_wait();
    let _ = conf.single_label_lookups();
});
