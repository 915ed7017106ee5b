//! `attach`: arbitrary bytes taken as a segment. `attach` must return `Ok` or
//! a typed error; when it is `Ok`, a short sequence of operations taken from
//! the rest of the input must return `Ok` or typed errors, and every slice
//! the ring hands out must lie inside the data region. See `fuzz/README.md`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    ringproof_fuzz::run_attach(data);
});
