//! placeholder until the sandbox lands
