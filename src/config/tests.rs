//! Unit tests of the config: the loader, the runtime session check, and fuzzed session bodies.

use super::*;

mod fuzz;
mod load;
mod runtime;
