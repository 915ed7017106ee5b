//! Prints the scaling table of `benches/README.md`: cross-process throughput
//! by message size and ring size, single and batch API (best of 3).
//! `cargo run --release -p ringproof-benches --example scaling`

use ringproof_benches::{Api, BenchError, Transfer, ring};

const SIZES: [usize; 4] = [8, 64, 1024, 64 * 1024];
const RINGS: [u64; 5] = [4 << 10, 64 << 10, 1 << 20, 16 << 20, 64 << 20];

fn label(bytes: u64) -> String {
    if bytes >= 1 << 20 {
        format!("{} MiB", bytes >> 20)
    } else if bytes >= 1 << 10 {
        format!("{} KiB", bytes >> 10)
    } else {
        format!("{bytes} B")
    }
}

fn main() -> Result<(), BenchError> {
    for api in [Api::Single, Api::Batch(64)] {
        println!(
            "\n{api:?}: messages/s and payload bandwidth, producer and consumer in two processes\n"
        );
        let mut header = String::from("| message \\ ring |");
        let mut rule = String::from("| --- |");
        for ring_size in RINGS {
            header.push_str(&format!(" {} |", label(ring_size)));
            rule.push_str(" --- |");
        }
        println!("{header}\n{rule}");
        for size in SIZES {
            let mut line = format!("| {} |", label(size as u64));
            let messages = ((256u64 << 20) / size as u64).clamp(20_000, 2_000_000);
            for ring_size in RINGS {
                if size as u64 > ringproof::layout::max_message(ring_size) {
                    line.push_str(" - |");
                    continue;
                }
                let cfg = Transfer::new(size, ring_size, messages).with_api(api);
                let mut best = 0.0f64;
                for _ in 0..3 {
                    best = best.max(ring::cross_process(&cfg)?.messages_per_sec());
                }
                let rate = if best >= 1e6 {
                    format!("{:.1} M/s", best / 1e6)
                } else {
                    format!("{:.0} k/s", best / 1e3)
                };
                line.push_str(&format!(" {rate}, {:.2} GB/s |", best * size as f64 / 1e9));
            }
            println!("{line}");
        }
    }
    Ok(())
}
