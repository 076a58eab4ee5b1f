//! End-to-end tests, the real-Docker test rig, and benchmarks for Mooring.
//!
//! Integration tests live in `tests/tests/`; [`rig`] finds the services that
//! `tests/rig/rig.sh up` started; [`bench`] is the `mooring-bench` harness
//! (see BENCHMARKS.md).

pub mod bench;
pub mod hubctl;
pub mod procs;
pub mod rig;
