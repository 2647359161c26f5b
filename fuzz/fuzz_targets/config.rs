//! Any text as a config file: `Config::from_toml` (parse and validate) never
//! panics, its errors display, and what it accepts validates again, needs no
//! restart against itself and builds its local answers.

#![no_main]

use std::path::Path;
use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use punctual::config::Config;
use punctual::local::{Hosts, LocalAnswers, RecordTable};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    match Config::from_toml(&text, Path::new("fuzz.toml")) {
        Ok(config) => {
            if let Err(error) = config.validate() {
                panic!("from_toml accepted a config that validate rejects: {error}");
            }
            assert!(
                config.needs_restart(&config).is_empty(),
                "differs from itself"
            );
            let _ = config.stale_answer_after();
            for forward in &config.forward {
                let _ = forward.zone_wire();
            }
            // Static records become wire records here.
            let _ = LocalAnswers::new(&config, Arc::new(Hosts::new(RecordTable::default())));
        }
        Err(error) => {
            let _ = error.to_string();
        }
    }
});
