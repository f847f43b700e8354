//! Fuzz target: see `imgedge::fuzzing::check_svg` (shared with tests/fuzz_corpus.rs).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    imgedge::fuzzing::check_svg(data);
});
