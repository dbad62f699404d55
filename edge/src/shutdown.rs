//! Stopping the node: the signals that ask for it, a one-shot [`Trigger`] the parts wait
//! on, and the [`RequestGate`] that lets in-flight requests finish while refusing new ones.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use signal_hook::consts::{SIGINT, SIGTERM};

/// Fired once; every clone sees it.
#[derive(Debug, Clone)]
pub struct Trigger {
    tx: async_std::channel::Sender<()>,
    rx: async_std::channel::Receiver<()>,
}

impl Default for Trigger {
    fn default() -> Self {
        let (tx, rx) = async_std::channel::bounded(1);
        Self { tx, rx }
    }
}

impl Trigger {
    pub fn fire(&self) {
        self.tx.close();
    }

    pub fn is_fired(&self) -> bool {
        self.tx.is_closed()
    }

    /// Resolves once [`Trigger::fire`] was called.
    pub async fn fired(&self) {
        // Nothing is ever sent: `recv` returns only when the channel is closed.
        let _ = self.rx.recv().await;
    }
}

/// Resolves at the first SIGTERM or SIGINT. Registered when called, so call it before
/// starting anything a signal should stop.
pub fn on_signals() -> std::io::Result<impl Future<Output = &'static str>> {
    let mut signals = signal_hook_async_std::Signals::new([SIGTERM, SIGINT])?;
    Ok(async move {
        match signals.next().await {
            Some(SIGINT) => "SIGINT",
            _ => "SIGTERM",
        }
    })
}

/// Counts requests in progress and, once closed, turns new ones away.
#[derive(Debug, Default)]
pub struct RequestGate {
    in_flight: AtomicUsize,
    closed: AtomicBool,
}

/// A request in progress; dropping it leaves the gate.
#[derive(Debug)]
pub struct Pass<'a>(&'a RequestGate);

impl Drop for Pass<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

impl RequestGate {
    /// `None` once the gate is closed.
    pub fn enter(&self) -> Option<Pass<'_>> {
        // Count first, then check: `close` sets the flag first, then waits for the count,
        // so no request can slip in unseen.
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        let pass = Pass(self);
        (!self.closed.load(Ordering::SeqCst)).then_some(pass)
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::SeqCst)
    }

    /// Refuse new requests and wait (at most `grace`) for those in progress; returns how
    /// many were still running when the wait ended.
    pub async fn close(&self, grace: Duration) -> usize {
        self.closed.store(true, Ordering::SeqCst);
        let deadline = Instant::now() + grace;
        while self.in_flight() > 0 && Instant::now() < deadline {
            async_std::task::sleep(Duration::from_millis(5)).await;
        }
        self.in_flight()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[async_std::test]
    async fn a_closed_gate_waits_for_requests_in_progress_and_refuses_new_ones() {
        let gate = std::sync::Arc::new(RequestGate::default());
        let pass = gate.enter().unwrap();
        let closing = {
            let gate = gate.clone();
            async_std::task::spawn(async move { gate.close(Duration::from_secs(5)).await })
        };
        async_std::task::sleep(Duration::from_millis(30)).await;
        assert!(gate.enter().is_none(), "new requests are refused");
        assert_eq!(gate.in_flight(), 1);
        drop(pass);
        assert_eq!(closing.await, 0);
    }

    #[async_std::test]
    async fn a_trigger_wakes_every_waiter() {
        let trigger = Trigger::default();
        let waiter = {
            let t = trigger.clone();
            async_std::task::spawn(async move { t.fired().await })
        };
        assert!(!trigger.is_fired());
        trigger.fire();
        waiter.await;
        assert!(trigger.is_fired());
    }
}
