//! `mpsc_ops`: a capacity, a producer count and a sequence of MPSC
//! operations (producers pushing, giving up, stalling on a claim, dying and
//! being replaced; the consumer reading, dropping, batching), some of them
//! a hostile peer writing a word of the live segment. Until the first such
//! write the ring must agree with the test kit's oracle exactly; after it,
//! every call must return `Ok` or a typed error, every slice handed out must
//! lie inside the data region, and nothing may panic. See `fuzz/README.md`.
#![no_main]

libfuzzer_sys::fuzz_target!(|input: ringproof_fuzz::MpscOpsInput| {
    ringproof_fuzz::run_mpsc_ops(&input);
});
