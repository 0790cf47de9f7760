//! The event store's one test suite, run against every backend: conformance
//! (`tests/conformance.rs`), a model check of random operation sequences (`tests/model.rs`) and a
//! SIGKILL crash loop (`tests/crash_loop.rs`), plus the store benchmark (`benches/store.rs`).
//! This crate has no library code; it exists so that the suite is written once.
