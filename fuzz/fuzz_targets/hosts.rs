//! Any text as a hosts file: `hosts::parse` and the table built from it never
//! panic, and every name a kept line holds is answered from the table.

#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use punctual::local::{hosts, name};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let entries = hosts::parse(&text, Path::new("hosts"));
    let table = hosts::table([entries.as_slice()]);
    for entry in &entries {
        assert!(!entry.names.is_empty(), "a kept line has a name");
        for owner in &entry.names {
            assert!(
                table.get(&name::key(owner)).is_some(),
                "{owner} is answered"
            );
        }
    }
});
