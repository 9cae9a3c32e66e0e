//! Reports: tables for the terminal and JSON for machines.

pub mod cost_report;
pub mod poly_report;
