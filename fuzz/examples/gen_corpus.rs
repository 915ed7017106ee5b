//! Writes the seed corpora `fuzz/corpus/{attach,ops}/` from
//! `ringproof_fuzz::seeds`: `cargo run --manifest-path fuzz/Cargo.toml --example gen_corpus`.

use std::path::Path;

fn main() -> std::io::Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    for (target, name, bytes) in ringproof_fuzz::seeds::all() {
        let dir = root.join(target);
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join(name), bytes)?;
        println!("{target}/{name}");
    }
    Ok(())
}
