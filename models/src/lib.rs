//! loom and shuttle models of the shipped protocol.
