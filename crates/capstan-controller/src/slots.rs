//! Two pools of concurrency, as Argo CD's status and operation processors: a reconcile runs
//! in a *status* slot (`workers`), and once it starts a sync operation it trades that slot for
//! an *operation* slot (`operation_workers`) for as long as the operation runs. A sync waiting
//! minutes for a rollout then holds no status slot: the other Applications keep being
//! compared, and at most `operation_workers` syncs run at once. A reconcile keeps its status
//! slot until it has an operation slot, so no more than `workers + operation_workers`
//! reconciles are ever in flight.
//!
//! The status slot travels with the reconcile's task (a task-local), so the reconcile code
//! gives it up without every function in between passing it along; outside a slot (a test
//! calling [`crate::Reconciler::reconcile`] directly) there is nothing to give up.

use std::cell::RefCell;
use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

tokio::task_local! {
    static STATUS_SLOT: RefCell<Option<OwnedSemaphorePermit>>;
}

/// Runs `work` holding the status slot `permit`, unless `work` gives it up.
pub(crate) async fn in_status_slot<F: std::future::Future>(
    permit: OwnedSemaphorePermit,
    work: F,
) -> F::Output {
    STATUS_SLOT.scope(RefCell::new(Some(permit)), work).await
}

/// Waits for an operation slot, then gives up this task's status slot (if it holds one); the
/// operation slot is held until the returned permit is dropped. The status slot is kept
/// while waiting: at most `workers + operation_workers` reconciles are in flight, so syncs
/// queueing for slots cannot pile up (each holds its rendered manifests and plan).
pub(crate) async fn trade_for_operation_slot(
    operations: &Arc<Semaphore>,
) -> Option<OwnedSemaphorePermit> {
    let permit = operations.clone().acquire_owned().await.ok();
    let released = STATUS_SLOT
        .try_with(|slot| slot.borrow_mut().take())
        .ok()
        .flatten();
    drop(released);
    permit
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_task_that_starts_an_operation_frees_its_status_slot() {
        let status = Arc::new(Semaphore::new(1));
        let operations = Arc::new(Semaphore::new(1));
        let permit = status.clone().acquire_owned().await.expect("open");
        assert_eq!(status.available_permits(), 0);
        let held = in_status_slot(permit, async {
            let op = trade_for_operation_slot(&operations).await;
            // The status slot is free for another reconcile while the operation runs.
            assert_eq!(status.available_permits(), 1);
            assert_eq!(operations.available_permits(), 0);
            op
        })
        .await;
        drop(held);
        assert_eq!(operations.available_permits(), 1);
    }

    #[tokio::test]
    async fn the_status_slot_is_kept_while_waiting_for_an_operation_slot() {
        let status = Arc::new(Semaphore::new(1));
        let operations = Arc::new(Semaphore::new(1));
        let busy = operations.clone().acquire_owned().await.expect("open");
        let permit = status.clone().acquire_owned().await.expect("open");
        let waiting = tokio::spawn({
            let operations = operations.clone();
            in_status_slot(permit, async move {
                trade_for_operation_slot(&operations).await.is_some()
            })
        });
        tokio::task::yield_now().await;
        assert_eq!(status.available_permits(), 0, "still held while waiting");
        drop(busy);
        assert!(waiting.await.expect("joins"));
        assert_eq!(status.available_permits(), 1);
    }

    #[tokio::test]
    async fn outside_a_slot_only_the_operation_slot_is_taken() {
        let operations = Arc::new(Semaphore::new(2));
        let op = trade_for_operation_slot(&operations).await;
        assert!(op.is_some());
        assert_eq!(operations.available_permits(), 1);
    }

    #[tokio::test]
    async fn a_reconcile_without_an_operation_keeps_its_slot_until_it_ends() {
        let status = Arc::new(Semaphore::new(1));
        let permit = status.clone().acquire_owned().await.expect("open");
        in_status_slot(permit, async {
            assert_eq!(status.available_permits(), 0);
        })
        .await;
        assert_eq!(status.available_permits(), 1);
    }
}
