//! The one retry curve of the binaries: exponential backoff with jitter.

use std::time::Duration;

use rand::Rng;

/// Waits between failed attempts: the ceiling starts at `first`, doubles after each wait up to
/// `max`, and each wait is drawn from the upper half of the current ceiling, so many nodes
/// that failed together do not retry in step. [`Backoff::reset`] after a success.
#[derive(Debug)]
pub struct Backoff {
    first: Duration,
    max: Duration,
    ceiling: Duration,
}

impl Backoff {
    /// The first wait of the binaries' retries.
    pub const FIRST: Duration = Duration::from_millis(100);

    /// A curve from `first` to `max` (a `first` above `max` is cut to `max`).
    pub fn new(first: Duration, max: Duration) -> Self {
        let first = first.min(max);
        Self {
            first,
            max,
            ceiling: first,
        }
    }

    /// The next wait; the ceiling doubles for the one after.
    pub fn next_delay(&mut self) -> Duration {
        let ceiling = self.ceiling;
        self.ceiling = (self.ceiling * 2).min(self.max);
        ceiling.mul_f64(rand::rng().random_range(0.5..=1.0))
    }

    /// Back to the first wait.
    pub fn reset(&mut self) {
        self.ceiling = self.first;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_to_its_ceiling_with_jitter() {
        let mut backoff = Backoff::new(Backoff::FIRST, Duration::from_secs(1));
        let waits: Vec<Duration> = (0..8).map(|_| backoff.next_delay()).collect();
        assert!(waits[0] >= Duration::from_millis(50) && waits[0] <= Duration::from_millis(100));
        assert!(waits[7] >= Duration::from_millis(500) && waits[7] <= Duration::from_secs(1));
        backoff.reset();
        assert!(backoff.next_delay() <= Duration::from_millis(100));
    }

    #[test]
    fn stays_capped() {
        let mut backoff = Backoff::new(Backoff::FIRST, Duration::from_secs(10));
        assert!(backoff.next_delay() <= Duration::from_millis(100));
        for _ in 0..20 {
            assert!(backoff.next_delay() <= Duration::from_secs(10));
        }
        backoff.reset();
        assert!(backoff.next_delay() <= Duration::from_millis(100));
    }

    #[test]
    fn a_ceiling_below_the_first_wait_wins() {
        let mut backoff = Backoff::new(Backoff::FIRST, Duration::from_millis(20));
        for _ in 0..4 {
            assert!(backoff.next_delay() <= Duration::from_millis(20));
        }
    }
}
