//! Tests of the Redox packaging live in `tests/`; this crate has no code of its own.
