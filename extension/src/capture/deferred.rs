//! Deferred tables (`track(..., deferred => true)`): their changes are
//! staged in webhooks.staged_change and become events at commit, from the
//! rows' final state, by capture_commit() (SQL). This file keeps the list of
//! tables a transaction staged changes of and, before commit, flushes what
//! capture_commit() has not: nothing a transaction wrote may go unseen.

use super::rights::as_owner;
use pgrx::pg_sys;
use pgrx::prelude::*;
use pgrx::PgSqlErrorCode;
use std::cell::RefCell;

thread_local! {
    // Deferred tables this transaction staged changes of: flushed before
    // commit if capture_commit() did not (SET CONSTRAINTS ... IMMEDIATE makes
    // it fire before the statement trigger that stages).
    static STAGED: RefCell<Vec<pg_sys::Oid>> = const { RefCell::new(Vec::new()) };
}

/// Notes that this transaction staged changes of the deferred table.
pub(super) fn stage(relid: pg_sys::Oid) {
    STAGED.with(|staged| {
        let mut staged = staged.borrow_mut();
        if !staged.contains(&relid) {
            staged.push(relid);
        }
    });
}

/// Before commit (or PREPARE), changes of deferred tables still staged
/// become events: nothing a transaction wrote may go unseen.
#[pg_guard]
pub(super) unsafe extern "C-unwind" fn at_transaction_end(event: pg_sys::XactEvent::Type, _arg: *mut std::ffi::c_void) {
    use pg_sys::XactEvent::*;
    match event {
        XACT_EVENT_PRE_COMMIT | XACT_EVENT_PRE_PREPARE => {
            if STAGED.with(|s| s.borrow().is_empty()) {
                return;
            }
            pg_sys::PushActiveSnapshot(pg_sys::GetTransactionSnapshot());
            // A payload function run by the flush may write to another
            // deferred table and stage again: flush until nothing is left.
            for _ in 0..FLUSH_ROUNDS {
                let staged = STAGED.with(|s| std::mem::take(&mut *s.borrow_mut()));
                if staged.is_empty() {
                    break;
                }
                flush(staged);
            }
            pg_sys::PopActiveSnapshot();
            if !STAGED.with(|s| s.borrow().is_empty()) {
                ereport!(
                    ERROR,
                    PgSqlErrorCode::ERRCODE_PROGRAM_LIMIT_EXCEEDED,
                    format!(
                        "webhooks: payload functions of deferred tables kept staging changes {FLUSH_ROUNDS} times over"
                    ),
                    "A payload function of a deferred table writes to a deferred table, which writes back."
                );
            }
        }
        XACT_EVENT_COMMIT | XACT_EVENT_ABORT | XACT_EVENT_PREPARE | XACT_EVENT_PARALLEL_ABORT => {
            STAGED.with(|s| s.borrow_mut().clear());
        }
        _ => {}
    }
}

/// Rounds of flushing before commit: changes staged by a flush's payload
/// functions are flushed in the next.
const FLUSH_ROUNDS: usize = 16;

/// Turns the staged changes of these deferred tables into events.
unsafe fn flush(staged: Vec<pg_sys::Oid>) {
    // (A 0.1.0 schema, not updated yet to this library's version, has no
    // commit_staged(): its commit trigger does it all.)
    as_owner(|| {
        let updated = Spi::get_one::<bool>(
            "SELECT pg_catalog.to_regprocedure('webhooks.commit_staged(pg_catalog.regclass)') IS NOT NULL",
        )
        .ok()
        .flatten()
        .unwrap_or(false);
        if !updated {
            return;
        }
        for relid in staged {
            let _ = Spi::get_one_with_args::<i64>(
                "SELECT webhooks.commit_staged($1::pg_catalog.oid::pg_catalog.regclass)",
                &[relid.into()],
            );
        }
    });
}
