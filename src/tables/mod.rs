//! The tables of the `poly`, `cost` and `degrees` commands (evaluation reports are `eval::report`).

pub mod cost_table;
pub mod poly_table;
