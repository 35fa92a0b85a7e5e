//! Reading and writing real `.tflite` files: round trips, determinism, and robustness
//! against truncated, random and mutated bytes.
//!
//! Models are every file of the zoo (`MULTITPU_ZOO`) and, when present, of the shared
//! models (`MULTITPU_TEST_MODELS`); see `tests/common`.

mod common;

use std::sync::OnceLock;

use multitpu::Error;
use multitpu::model::Model;
use proptest::prelude::*;

/// `(file name, bytes)` of one model file.
type NamedFile = (String, Vec<u8>);

/// Every model file, sorted by name; `None` (skipped, with a notice) without the zoo.
fn models() -> Option<&'static [NamedFile]> {
    static MODELS: OnceLock<Vec<NamedFile>> = OnceLock::new();
    let models = MODELS.get_or_init(common::every_model_file);
    (!models.is_empty()).then_some(models.as_slice())
}

fn model(name: &str) -> Option<&'static [u8]> {
    let found = models()?.iter().find(|(n, _)| n == name);
    Some(
        &found
            .unwrap_or_else(|| panic!("test model {name} missing"))
            .1,
    )
}

/// Shared model `name`, when the shared models are there.
fn shared_model(name: &str) -> Option<&'static [u8]> {
    common::shared_dir()?;
    model(name)
}

#[test]
fn every_model_round_trips() {
    let Some(models) = models() else { return };
    for (name, bytes) in models {
        let m = Model::from_bytes(bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        let written = m
            .to_bytes()
            .unwrap_or_else(|e| panic!("{name}: write: {e}"));
        assert_eq!(&written[4..8], b"TFL3", "{name}");
        let again = Model::from_bytes(&written).unwrap_or_else(|e| panic!("{name}: re-read: {e}"));
        assert_eq!(m, again, "{name}: read → write → read differs");
        assert_eq!(
            written,
            again.to_bytes().expect("write again"),
            "{name}: write is not a fixed point"
        );
        assert_eq!(
            written,
            m.to_bytes().expect("write"),
            "{name}: not deterministic"
        );
        // Detached from the file bytes, the model is the same and writes the same bytes.
        let owned = m.clone().into_owned();
        assert_eq!(owned, m, "{name}");
        assert_eq!(owned.to_bytes().expect("write owned"), written, "{name}");
    }
}

#[test]
fn written_constant_data_is_16_byte_aligned() {
    let Some(models) = models() else { return };
    for (name, bytes) in models {
        let written = Model::from_bytes(bytes)
            .and_then(|m| m.to_bytes())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let m = Model::from_bytes(&written).expect("re-read");
        let base = written.as_ptr() as usize;
        let blobs = m
            .tensors
            .iter()
            .filter_map(|t| t.data.as_deref())
            .chain(m.metadata.iter().map(|md| &*md.data))
            .chain(
                m.operators
                    .iter()
                    .filter_map(|o| o.custom_options.as_deref()),
            )
            .filter(|d| !d.is_empty());
        for data in blobs {
            assert_eq!((data.as_ptr() as usize - base) % 16, 0, "{name}");
        }
    }
}

#[test]
fn unaligned_int64_vectors_read_fine() {
    // (file, its operator count): TFLite loads these files, so must we.
    let files = [
        (common::zoo::CNN_INT8, model(common::zoo::CNN_INT8), 6),
        (
            "MNISTnet_uint8_quant.tflite",
            shared_model("MNISTnet_uint8_quant.tflite"),
            9,
        ),
    ];
    for (name, bytes, operators) in files {
        let Some(bytes) = bytes else { continue };
        let m = Model::from_bytes(bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(m.operators.len(), operators, "{name}");
        let zero_points = m
            .tensors
            .iter()
            .filter_map(|t| t.quantization.as_ref())
            .filter(|q| !q.zero_point.is_empty())
            .count();
        assert!(
            zero_points > 0,
            "{name}: quantized tensors carry zero points"
        );
    }
}

#[test]
fn compiled_models_keep_the_edgetpu_program() {
    let compiled = common::compiled_zoo_model(common::zoo::CNN_INT8);
    let shared = shared_model("mobilenet_v1_0.25_128_quant_edgetpu.tflite").map(<[u8]>::to_vec);
    for bytes in [compiled, shared].into_iter().flatten() {
        check_edgetpu_program(&bytes);
    }
}

/// The `edgetpu-custom-op`'s options carry the device program and survive a round trip.
fn check_edgetpu_program(bytes: &[u8]) {
    let m = Model::from_bytes(bytes).expect("read");
    let op = m
        .operators
        .iter()
        .find(|o| o.opcode.custom.as_deref() == Some("edgetpu-custom-op"))
        .expect("compiled model holds an edgetpu-custom-op");
    let options = op.custom_options.as_deref().expect("custom options");
    assert!(
        options.windows(4).any(|w| w == b"DWN1"),
        "device program present"
    );
    let again = Model::from_bytes(&m.to_bytes().expect("write"))
        .expect("re-read")
        .into_owned();
    let again_op = again
        .operators
        .iter()
        .find(|o| o.opcode.custom.as_deref() == Some("edgetpu-custom-op"))
        .expect("still there");
    assert_eq!(again_op.custom_options.as_deref(), Some(options));
}

#[test]
fn metadata_survives() {
    let Some(models) = models() else { return };
    let with_metadata: Vec<_> = models
        .iter()
        .filter_map(|(name, bytes)| {
            let m = Model::from_bytes(bytes).ok()?;
            (!m.metadata.is_empty()).then_some((name, m))
        })
        .collect();
    assert!(
        !with_metadata.is_empty(),
        "some test model carries metadata (min_runtime_version)"
    );
    for (name, m) in with_metadata {
        let again_bytes = m.to_bytes().expect("write");
        let again = Model::from_bytes(&again_bytes).expect("re-read");
        assert_eq!(m.metadata, again.metadata, "{name}");
    }
}

/// Proper prefixes of a file: every one for small files, a deterministic sample for big.
fn prefixes(len: usize) -> Vec<usize> {
    if len <= 64 * 1024 {
        return (0..len).collect();
    }
    let mut cut: Vec<usize> = (0..4096).collect();
    cut.extend((0..len).step_by(len / 512));
    cut.extend(len - 4096..len);
    cut.retain(|&c| c < len);
    cut
}

#[test]
fn truncated_files_are_rejected_without_panic() {
    let Some(models) = models() else { return };
    for (name, bytes) in models {
        let full = Model::from_bytes(bytes).expect("full file reads");
        let mut shortest_accepted = None;
        for cut in prefixes(bytes.len()) {
            match Model::from_bytes(&bytes[..cut]) {
                // Some files carry unreferenced trailing bytes (e.g. a zip of label files
                // appended after the flatbuffer); cutting only those changes nothing.
                Ok(m) => {
                    assert_eq!(m, full, "{name}[..{cut}] reads as a different model");
                    shortest_accepted.get_or_insert(cut);
                }
                Err(Error::Malformed { .. } | Error::Unsupported { .. }) => {
                    assert!(
                        shortest_accepted.is_none(),
                        "{name}: prefix {cut} rejected but a shorter one was accepted"
                    );
                }
                Err(e) => panic!("{name}[..{cut}]: unexpected error kind {e:?}"),
            }
        }
    }
}

#[test]
fn truncated_writer_output_is_rejected() {
    let files = [
        model(common::zoo::RESNET),
        shared_model("MNISTnet_v2_uint8_quant.tflite"),
    ];
    for bytes in files.into_iter().flatten() {
        let written = Model::from_bytes(bytes)
            .and_then(|m| m.to_bytes())
            .expect("write");
        // Our writer leaves no trailing padding: every proper prefix misses referenced bytes.
        for cut in 0..written.len() {
            assert!(Model::from_bytes(&written[..cut]).is_err(), "prefix {cut}");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(
        mut bytes in proptest::collection::vec(any::<u8>(), 0..2048),
        tag in any::<bool>(),
    ) {
        if tag && bytes.len() >= 8 {
            bytes[4..8].copy_from_slice(b"TFL3");
        }
        let _ = Model::from_bytes(&bytes);
    }
}

/// One edit of a file's bytes.
#[derive(Debug, Clone)]
enum Mutation {
    /// Flip one bit.
    Flip(usize, u8),
    /// Overwrite one byte.
    Byte(usize, u8),
    /// Overwrite four bytes with a value likely to upset offsets and lengths.
    Word(usize, u32),
    /// Insert one byte.
    Insert(usize, u8),
    /// Delete one byte.
    Delete(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let word = prop_oneof![
        Just(0u32),
        Just(1),
        Just(4),
        Just(0x7fff_ffff),
        Just(0x8000_0000),
        Just(u32::MAX),
        Just(u32::MAX - 3),
        0u32..65536,
        any::<u32>(),
    ];
    prop_oneof![
        (any::<usize>(), 0u8..8).prop_map(|(i, b)| Mutation::Flip(i, b)),
        (any::<usize>(), any::<u8>()).prop_map(|(i, v)| Mutation::Byte(i, v)),
        (any::<usize>(), word).prop_map(|(i, v)| Mutation::Word(i, v)),
        (any::<usize>(), any::<u8>()).prop_map(|(i, v)| Mutation::Insert(i, v)),
        any::<usize>().prop_map(Mutation::Delete),
    ]
}

/// Applies `m`. With `focus`, positions fall in the first or last 64 KiB (by parity),
/// where big files keep their tables, instead of anywhere in the weights.
fn apply(bytes: &mut Vec<u8>, m: &Mutation, focus: bool) {
    if bytes.is_empty() {
        return;
    }
    let len = bytes.len();
    let at = |i: usize| {
        if focus {
            let j = (i >> 1) % len.min(65536);
            if i.is_multiple_of(2) { j } else { len - 1 - j }
        } else {
            i % len
        }
    };
    match *m {
        Mutation::Flip(i, bit) => {
            let i = at(i);
            bytes[i] ^= 1 << bit;
        }
        Mutation::Byte(i, v) => {
            let i = at(i);
            bytes[i] = v;
        }
        Mutation::Word(i, v) => {
            let i = at(i) & !3;
            let end = (i + 4).min(bytes.len());
            bytes[i..end].copy_from_slice(&v.to_le_bytes()[..end - i]);
        }
        Mutation::Insert(i, v) => {
            let i = at(i);
            bytes.insert(i, v);
        }
        Mutation::Delete(i) => {
            let i = at(i);
            bytes.remove(i);
        }
    }
}

/// Reads mutated bytes; whatever is accepted must write, and writing must be a fixed
/// point (compared as bytes, so NaNs in mutated floats do not matter).
fn check_mutated(bytes: &[u8]) -> Result<(), TestCaseError> {
    if let Ok(m) = Model::from_bytes(bytes) {
        match m.to_bytes() {
            Ok(written) => {
                let again = Model::from_bytes(&written);
                prop_assert!(again.is_ok(), "re-read failed: {:?}", again.err());
                let rewritten = again.and_then(|a| a.to_bytes());
                prop_assert_eq!(Some(written), rewritten.ok());
            }
            Err(Error::Invalid { .. } | Error::Unsupported { .. }) => {}
            Err(e) => prop_assert!(false, "unexpected write error {e:?}"),
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

    #[test]
    fn mutated_small_models_never_panic(
        which in any::<usize>(),
        edits in proptest::collection::vec(mutation(), 1..8),
    ) {
        let Some(models) = models() else { return Ok(()) };
        let small: Vec<_> = models.iter().filter(|(_, b)| b.len() <= 100_000).collect();
        prop_assume!(!small.is_empty());
        let mut bytes = small[which % small.len()].1.clone();
        for e in &edits {
            apply(&mut bytes, e, false);
        }
        check_mutated(&bytes)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn mutated_large_models_never_panic(
        which in any::<usize>(),
        focus in any::<bool>(),
        edits in proptest::collection::vec(mutation(), 1..4),
    ) {
        let Some(models) = models() else { return Ok(()) };
        let large: Vec<_> = models.iter().filter(|(_, b)| b.len() > 100_000).collect();
        prop_assume!(!large.is_empty());
        let mut bytes = large[which % large.len()].1.clone();
        for e in &edits {
            apply(&mut bytes, e, focus);
        }
        check_mutated(&bytes)?;
    }
}
