//! polycnn: how well do pretrained CNNs classify when every ReLU and max-pool is replaced by the
//! polynomial an FHE (CKKS) server would evaluate? See ARCHITECTURE.md for the module map.

pub mod bench;
pub mod cpu;
pub mod data;
pub mod eval;
pub mod exec;
pub mod gpu;
pub mod model;
pub mod pickle;
pub mod poly;
pub mod tables;
pub mod validate;
pub mod weights;

#[cfg(test)]
#[allow(dead_code)] // shared with tests/common, which uses the rest
mod test_data;
