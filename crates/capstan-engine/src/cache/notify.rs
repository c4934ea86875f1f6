//! Telling the controller which apps changed.
//!
//! Every subscriber has its own set of pending app names. Watch tasks add to every set and
//! wake the subscriber; the subscriber takes the whole set at once. A burst of Pod events
//! for one app therefore costs the controller one refresh, and nothing is lost to a slow
//! reader (unlike a bounded broadcast channel, which drops messages when it lags).

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, Weak};

use tokio::sync::Notify;

use super::store::Touched;

#[derive(Debug, Default)]
struct Pending {
    apps: BTreeSet<String>,
    closed: bool,
}

#[derive(Debug, Default)]
struct Slot {
    pending: Mutex<Pending>,
    wake: Notify,
}

/// The subscribers of one cache.
#[derive(Debug, Default)]
pub(crate) struct Subscribers {
    slots: Mutex<Vec<Weak<Slot>>>,
}

impl Subscribers {
    /// A new subscription; it sees changes from now on.
    pub fn subscribe(&self) -> AppChanges {
        let slot = Arc::new(Slot::default());
        self.slots
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Arc::downgrade(&slot));
        AppChanges { slot }
    }

    /// Records that `apps` changed.
    pub fn publish(&self, apps: &Touched) {
        if apps.is_empty() {
            return;
        }
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        slots.retain(|weak| {
            let Some(slot) = weak.upgrade() else {
                return false;
            };
            {
                let mut pending = slot.pending.lock().unwrap_or_else(|e| e.into_inner());
                pending.apps.extend(apps.iter().map(|a| a.to_string()));
            }
            slot.wake.notify_one();
            true
        });
    }

    /// Ends every subscription (the cache stopped): pending changes are still delivered,
    /// then [`AppChanges::changed`] returns `None`.
    pub fn close(&self) {
        let slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        for slot in slots.iter().filter_map(Weak::upgrade) {
            slot.pending
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .closed = true;
            slot.wake.notify_one();
        }
    }
}

/// A subscription to the apps whose resources changed (see [`super::ClusterCache::subscribe`]).
#[derive(Debug)]
pub struct AppChanges {
    slot: Arc<Slot>,
}

impl AppChanges {
    /// Waits until at least one app changed and returns every app that changed since the
    /// last call; `None` once the cache has stopped and everything was delivered.
    pub async fn changed(&mut self) -> Option<BTreeSet<String>> {
        loop {
            if let Some(apps) = self.try_changed() {
                return Some(apps);
            }
            if self
                .slot
                .pending
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .closed
            {
                return None;
            }
            // A permit stored by a publish between the check and here wakes us at once.
            self.slot.wake.notified().await;
        }
    }

    /// The apps that changed since the last call, without waiting.
    pub fn try_changed(&mut self) -> Option<BTreeSet<String>> {
        let mut pending = self.slot.pending.lock().unwrap_or_else(|e| e.into_inner());
        if pending.apps.is_empty() {
            None
        } else {
            Some(std::mem::take(&mut pending.apps))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touched(apps: &[&str]) -> Touched {
        apps.iter().map(|a| Arc::from(*a)).collect()
    }

    #[tokio::test]
    async fn changes_coalesce_per_subscriber() {
        let subs = Subscribers::default();
        let mut a = subs.subscribe();
        let mut b = subs.subscribe();
        subs.publish(&touched(&["x"]));
        subs.publish(&touched(&["y", "x"]));
        let got = a.changed().await.expect("open");
        assert_eq!(got.into_iter().collect::<Vec<_>>(), ["x", "y"]);
        assert!(a.try_changed().is_none());
        assert_eq!(b.try_changed().map(|s| s.len()), Some(2));
        drop(b);
        subs.publish(&touched(&["z"]));
        assert_eq!(subs.slots.lock().expect("not poisoned").len(), 1);
        subs.close();
        assert_eq!(a.changed().await.map(|s| s.len()), Some(1));
        assert_eq!(a.changed().await, None);
    }
}
