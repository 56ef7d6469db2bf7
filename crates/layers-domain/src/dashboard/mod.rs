//! The rules behind what a person sees and controls on the dashboard: calendar periods of key
//! limits, the runway forecast, alert thresholds, CSV cells and signed alert webhooks. Time is
//! passed in (UTC), never read.

pub mod alerts;
pub mod csv;
pub mod period;
pub mod runway;
pub mod signature;

pub use period::SpendPeriod;
