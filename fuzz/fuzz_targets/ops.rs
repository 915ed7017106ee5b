//! `ops`: a capacity, a start position and a sequence of operations, some of
//! them a hostile peer writing bytes into the live segment. Until the first
//! such write the ring must agree with the `VecDeque` oracle exactly; after
//! it, every call must return `Ok` or a typed error, a side that reported
//! corruption must keep reporting it, and nothing may panic or touch memory
//! outside the segment. See `fuzz/README.md`.
#![no_main]

libfuzzer_sys::fuzz_target!(|input: ringproof_fuzz::OpsInput| {
    ringproof_fuzz::run_ops(&input);
});
