//! Flows: packets folded into bidirectional conversations.

pub mod key;
