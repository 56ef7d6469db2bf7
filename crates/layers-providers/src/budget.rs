//! The node's memory for upstream data: every non-streamed body, every partly read SSE event
//! and every image fetched for a request is buffered against one budget shared by all calls,
//! and image fetches are limited in number across all requests (SPEC §8).
//! Invariant: a reservation never waits: when the budget is spent the call fails at once with
//! [`ProviderError::OverBudget`], so a hostile upstream cannot take the node's memory.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::ProviderError;

/// Budgets are counted in KiB.
const UNIT: usize = 1024;

/// Limits on what upstream calls may hold in memory at once, for the whole node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UpstreamLimits {
    /// Bytes of upstream data buffered at once, across every call.
    pub buffer_bytes: usize,
    /// Images fetched by URL at once, across every request.
    pub image_fetches: usize,
}

impl Default for UpstreamLimits {
    fn default() -> Self {
        UpstreamLimits { buffer_bytes: 256 * 1024 * 1024, image_fetches: 32 }
    }
}

#[derive(Clone, Debug)]
pub struct Budget {
    bytes: Arc<Semaphore>,
    images: Arc<Semaphore>,
}

/// Memory held against the budget, given back when dropped.
#[derive(Debug, Default)]
pub struct Held {
    permit: Option<OwnedSemaphorePermit>,
}

impl Held {
    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.permit.as_ref().map_or(0, |p| p.num_permits() * UNIT)
    }

    /// Gives everything back.
    pub fn release(&mut self) {
        self.permit = None;
    }
}

impl Default for Budget {
    fn default() -> Self {
        Budget::new(UpstreamLimits::default())
    }
}

impl Budget {
    pub fn new(limits: UpstreamLimits) -> Budget {
        let units = (limits.buffer_bytes / UNIT).clamp(1, Semaphore::MAX_PERMITS);
        Budget {
            bytes: Arc::new(Semaphore::new(units)),
            images: Arc::new(Semaphore::new(limits.image_fetches.clamp(1, Semaphore::MAX_PERMITS))),
        }
    }

    /// Grows `held` to cover `bytes`, or fails at once when the node's budget is spent.
    pub fn cover(&self, held: &mut Held, bytes: usize) -> Result<(), ProviderError> {
        let have = held.permit.as_ref().map_or(0, |p| p.num_permits());
        let need = bytes.div_ceil(UNIT);
        if need <= have {
            return Ok(());
        }
        let more = u32::try_from(need - have).map_err(|_| ProviderError::OverBudget)?;
        let extra = self.bytes.clone().try_acquire_many_owned(more).map_err(|_| ProviderError::OverBudget)?;
        match &mut held.permit {
            Some(p) => p.merge(extra),
            None => held.permit = Some(extra),
        }
        Ok(())
    }

    /// A place among the node's concurrent image fetches (waits for one to end; the caller
    /// bounds the wait by its deadline).
    pub async fn image_fetch(&self) -> Option<OwnedSemaphorePermit> {
        self.images.clone().acquire_owned().await.ok()
    }

    /// Bytes free now (for metrics and tests).
    pub fn free_bytes(&self) -> usize {
        self.bytes.available_permits() * UNIT
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn covering_grows_and_fails_at_the_limit_without_waiting() {
        let budget = Budget::new(UpstreamLimits { buffer_bytes: 10 * UNIT, image_fetches: 1 });
        let mut a = Held::default();
        budget.cover(&mut a, 3 * UNIT + 1).unwrap();
        assert_eq!(a.bytes(), 4 * UNIT);
        budget.cover(&mut a, 2 * UNIT).unwrap();
        assert_eq!(a.bytes(), 4 * UNIT, "never shrinks by itself");
        let mut b = Held::default();
        assert!(matches!(budget.cover(&mut b, 7 * UNIT), Err(ProviderError::OverBudget)));
        budget.cover(&mut b, 6 * UNIT).unwrap();
        drop(a);
        assert_eq!(budget.free_bytes(), 4 * UNIT);
        b.release();
        assert_eq!(budget.free_bytes(), 10 * UNIT);
    }
}
