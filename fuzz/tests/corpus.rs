//! The committed corpora as regular tests: every file under
//! `fuzz/corpus/{attach,ops,mpsc_ops}` (seeds and any minimised crash added there) runs
//! through its target's function without a finding, and every generated seed
//! is committed unchanged.

use std::path::{Path, PathBuf};

use arbitrary::{Arbitrary, Unstructured};
use ringproof_fuzz::{MpscOpsInput, OpsInput, run_attach, run_mpsc_ops, run_ops, seeds};

fn corpus(target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .collect();
    files.sort();
    files
}

#[test]
fn attach_corpus_replays_without_a_finding() {
    let files = corpus("attach");
    assert!(files.len() >= 10, "seed corpus missing");
    for file in files {
        run_attach(&std::fs::read(&file).unwrap());
    }
}

#[test]
fn ops_corpus_replays_without_a_finding() {
    let files = corpus("ops");
    assert!(files.len() >= 10, "seed corpus missing");
    for file in files {
        let data = std::fs::read(&file).unwrap();
        let input = OpsInput::arbitrary_take_rest(Unstructured::new(&data)).unwrap();
        run_ops(&input);
    }
}

#[test]
fn mpsc_ops_corpus_replays_without_a_finding() {
    let files = corpus("mpsc_ops");
    assert!(files.len() >= 5, "seed corpus missing");
    for file in files {
        let data = std::fs::read(&file).unwrap();
        let input = MpscOpsInput::arbitrary_take_rest(Unstructured::new(&data)).unwrap();
        run_mpsc_ops(&input);
    }
}

#[test]
fn mpsc_ops_seeds_decode_to_what_was_encoded() {
    for (target, name, bytes) in seeds::all() {
        if target == "mpsc_ops" {
            let input = MpscOpsInput::arbitrary_take_rest(Unstructured::new(&bytes)).unwrap();
            assert_eq!(input.encode(), bytes, "{name}");
        }
    }
}

#[test]
fn ops_seeds_decode_to_what_was_encoded() {
    for (target, name, bytes) in seeds::all() {
        if target == "ops" {
            let input = OpsInput::arbitrary_take_rest(Unstructured::new(&bytes)).unwrap();
            assert_eq!(input.encode(), bytes, "{name}");
        }
    }
}

#[test]
fn generated_seeds_are_committed() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    for (target, name, bytes) in seeds::all() {
        let path = root.join(target).join(name);
        let committed = std::fs::read(&path)
            .unwrap_or_else(|e| panic!("{}: {e} (run the gen_corpus example)", path.display()));
        assert_eq!(committed, bytes, "{} is stale", path.display());
    }
}
