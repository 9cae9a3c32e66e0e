//! Reports: tables for the terminal and JSON for machines.

pub mod poly_report;
