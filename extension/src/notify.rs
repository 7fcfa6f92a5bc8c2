//! Waking pollers: `NOTIFY webhooks` once per transaction that produced
//! deliveries, called by the capture engine and by the extension's SQL that
//! writes events. A notification only wakes pollers early (they also poll on
//! a timer), so one per transaction is enough and its payload is constant.

use pgrx::prelude::*;
use std::cell::Cell;

thread_local! {
    static NOTIFIED_XID: Cell<pg_sys::TransactionId> = const { Cell::new(pg_sys::InvalidTransactionId) };
}

/// `NOTIFY webhooks` at most once per (sub)transaction, with a constant
/// payload. Keyed on the current transaction id, so a rolled-back savepoint
/// (which discards its notification) does not suppress the next one.
#[pg_extern(volatile, parallel_unsafe)]
pub(crate) fn notify_once() {
    if !crate::guc::NOTIFY.get() {
        return;
    }
    let xid = unsafe { pg_sys::GetCurrentTransactionIdIfAny() };
    if xid != pg_sys::InvalidTransactionId && NOTIFIED_XID.get() == xid {
        return;
    }
    unsafe {
        pgrx::direct_function_call::<()>(pg_sys::pg_notify, &["webhooks".into_datum(), "".into_datum()]);
    }
    NOTIFIED_XID.set(xid);
}
