//! Unit tests of the policy: compiling `[policy]`, evaluating prompts, and fuzzed rules.

use super::*;

mod compile;
mod evaluate;
mod fuzz;
