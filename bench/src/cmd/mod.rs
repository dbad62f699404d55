//! The subcommands of `ta-bench`: a load generator, one benchmark per scenario, `all` (every
//! scenario into one report), the demo traffic and the null servers used as ceilings.

pub mod all;
pub mod attack;
pub mod demo;
pub mod edge;
pub mod freshness;
pub mod load;
pub mod loader;
pub mod null;
pub mod query;
pub mod soak;
