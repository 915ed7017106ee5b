//! Sizes and durations on the command line: `64KiB`, `1MiB`, `1MB`, `4096`.
//!
//! Parsing goes through the `bytesize` crate (`KiB`/`MiB` are powers of two,
//! `KB`/`MB` powers of ten, a bare number is bytes); this module adds the
//! range checks the ring needs and formats sizes back for humans.

use ringproof::layout::{MAX_CAPACITY, MIN_CAPACITY};

/// Parses a size with an optional unit.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err("empty size (examples: 4096, 64KiB, 1MiB, 1MB)".to_string());
    }
    let size: bytesize::ByteSize = trimmed
        .parse()
        .map_err(|_| format!("{text:?} is not a size (examples: 4096, 64KiB, 1MiB, 1MB)"))?;
    if size.as_u64() == u64::MAX {
        return Err(format!("{text:?} is too large"));
    }
    Ok(size.as_u64())
}

/// Parses a ring capacity: a power of two within the range the layout accepts.
pub fn parse_ring_size(text: &str) -> Result<u64, String> {
    let size = parse_size(text)?;
    if !ringproof::layout::capacity_ok(size) {
        return Err(format!(
            "{text:?} ({size} bytes) is not a valid ring size: it must be a power of two from {} to {} (e.g. 64KiB, 1MiB)",
            human(MIN_CAPACITY),
            human(MAX_CAPACITY)
        ));
    }
    Ok(size)
}

/// Parses a positive size (message sizes, rates).
pub fn parse_positive_size(text: &str) -> Result<u64, String> {
    match parse_size(text)? {
        0 => Err(format!("{text:?} must be at least 1 byte")),
        size => Ok(size),
    }
}

/// Parses a duration such as `500ms`, `5s` or `2m`.
pub fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    humantime::parse_duration(text.trim())
        .map_err(|e| format!("{text:?} is not a duration ({e}; examples: 500ms, 5s, 2m)"))
}

/// A size for humans: `64 KiB`, `1 MiB`, `100 B`.
pub fn human(bytes: u64) -> String {
    bytesize::ByteSize::b(bytes).display().iec().to_string()
}

/// A duration for humans: `5s`, `250ms`.
pub fn human_duration(duration: std::time::Duration) -> String {
    humantime::format_duration(duration).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_are_binary_or_decimal_as_written() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("64KiB"), Ok(64 * 1024));
        assert_eq!(parse_size("1MiB"), Ok(1 << 20));
        assert_eq!(parse_size("1MB"), Ok(1_000_000));
        assert_eq!(parse_size("2 kib"), Ok(2048));
        assert!(parse_size("").is_err());
        assert!(parse_size("12 parsecs").is_err());
        assert!(parse_size("-1").is_err());
    }

    #[test]
    fn ring_sizes_must_be_powers_of_two_in_range() {
        assert_eq!(parse_ring_size("64KiB"), Ok(65536));
        let err = parse_ring_size("1MB").unwrap_err();
        assert!(err.contains("power of two"), "{err}");
        assert!(parse_ring_size("16").is_err());
        assert!(parse_ring_size("4TiB").is_err());
    }

    #[test]
    fn zero_is_not_a_positive_size() {
        assert!(parse_positive_size("0").is_err());
        assert_eq!(parse_positive_size("1"), Ok(1));
    }

    #[test]
    fn durations_take_units() {
        assert_eq!(parse_duration("5s"), Ok(std::time::Duration::from_secs(5)));
        assert!(parse_duration("soon").is_err());
    }

    #[test]
    fn humans_read_binary_units() {
        assert_eq!(human(1 << 20), "1.0 MiB");
        assert_eq!(human(100), "100 B");
    }
}
