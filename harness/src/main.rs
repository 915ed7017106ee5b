//! The `ringproof` command-line tool.
fn main() {}
