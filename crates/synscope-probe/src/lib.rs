//! synscope's probe layer: what to send, how to read what comes back, and when.
//!
//! Every state machine here is sans-IO: packets and their kernel timestamps go in,
//! packets to send and deadlines come out. Sockets, clocks and the async runtime
//! live in the `synscope` crate above, so the compiler keeps this layer from
//! reaching for them.
#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod event;
pub mod probe;
pub mod scan;
/// The packet layer, its own crate (`synscope-wire`).
pub use synscope_wire as wire;
