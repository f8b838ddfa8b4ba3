//! Reading the bus as an outside subscriber would: a core NATS subscription on `mlops.events.>`
//! (no consumer state is created), each event decoded by its subject (`mlops_shared::describe`).

pub use mlops_shared::describe::{Decoded, Seen, decode};
