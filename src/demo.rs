//! placeholder until the demo branch lands
pub const CAPTURE: &[u8] = &[];
pub const CLUSTER: &str = "";
