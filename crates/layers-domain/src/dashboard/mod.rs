//! The rules behind what a person sees and controls on the dashboard: calendar periods of key
//! limits, the runway forecast, alert thresholds and CSV cells. Time is passed in (UTC), never
//! read.

pub mod alerts;
pub mod csv;
pub mod period;
pub mod runway;

pub use period::SpendPeriod;
