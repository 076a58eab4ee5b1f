//! # mooring-agent: the Mooring edge agent (Hawser-compatible), as a library.
pub mod telemetry;
