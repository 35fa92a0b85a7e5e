//! Plan manifests are input: any bytes as a manifest, beside one real segment file, give
//! segment models whose every role is one a plan has, or a typed error; never a panic, and
//! never a file read from outside the manifest's folder.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use multitpu::deploy::{MAX_DEVICES, SegmentKind, SegmentModels};

/// A folder of this process's own holding `fc.tflite`, the paper's fc model.
fn folder() -> &'static PathBuf {
    static FOLDER: OnceLock<PathBuf> = OnceLock::new();
    FOLDER.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("multitpu-fuzz-manifest-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a temporary folder");
        let model = multitpu::model::paper::fc(100).expect("the paper's fc model");
        std::fs::write(dir.join("fc.tflite"), model.to_bytes().expect("bytes")).expect("write");
        dir
    })
}

fuzz_target!(|data: &[u8]| {
    let manifest = folder().join("fuzzed.plan");
    std::fs::write(&manifest, data).expect("write the manifest");
    if let Ok(models) = SegmentModels::read(&manifest) {
        for segment in models.segments() {
            assert!((1..=MAX_DEVICES).contains(&segment.replicas()));
            assert!(segment.kind() == SegmentKind::EdgeTpu || segment.replicas() == 1);
            let file = segment.file().expect("read from a file");
            assert_eq!(file.parent(), Some(folder().as_path()), "{file:?}");
        }
    }
});
