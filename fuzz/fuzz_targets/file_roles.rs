//! Segment file names are input: any name gives a role or a typed error, never a panic or a
//! replica count outside 1..=MAX_DEVICES; and every name `segment_file_name` makes, for any
//! stem, reads back as the role it was made for.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use multitpu::deploy::{MAX_DEVICES, SegmentKind, segment_file_name, segment_file_role};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok((_, replicas)) = segment_file_role(Path::new(text.as_ref())) {
        assert!(
            (1..=MAX_DEVICES).contains(&replicas),
            "{replicas} replicas from {text:?}"
        );
    }
    let Some((&selector, stem)) = data.split_first() else {
        return;
    };
    let stem = String::from_utf8_lossy(stem);
    if stem.contains('/') || stem.contains('\0') {
        return;
    }
    let kind = if selector & 1 == 0 {
        SegmentKind::EdgeTpu
    } else {
        SegmentKind::Cpu
    };
    let replicas = if kind == SegmentKind::Cpu {
        1
    } else {
        1 + usize::from(selector >> 1) % MAX_DEVICES
    };
    let name = segment_file_name(&stem, 0, 2, kind, replicas);
    let role = segment_file_role(Path::new(&name)).expect("a name made by segment_file_name");
    assert_eq!(role, (kind, replicas), "{name:?}");
});
