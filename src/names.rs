//! names (in progress)
