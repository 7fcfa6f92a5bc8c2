//! Writing the rows capture makes: events into webhooks.event, or a
//! deferred table's changes into webhooks.staged_change, as the extension's
//! owner with INSERTs prepared once per session; and the size limit every
//! event document meets first (`webhooks.max_event_size`), also offered to
//! the events written in SQL as `webhooks.checked_event_size()`.
//!
//! The one place that knows the shape of those tables' INSERTs, so a change
//! of their columns is made here only.

use super::change::Change;
use super::rights::as_owner;
use super::settings::Settings;
use pgrx::pg_sys;
use pgrx::prelude::*;
use pgrx::PgSqlErrorCode;
use std::cell::RefCell;
use std::ffi::CStr;
use std::ptr;

finfo!(pg_finfo_checked_event_size);

thread_local! {
    // INSERT plans: [events, staged changes] x [one row, a batch].
    static PLANS: RefCell<[pg_sys::SPIPlanPtr; 4]> = const { RefCell::new([ptr::null_mut(); 4]) };
}

/// Raises 54000 when an event's data is bigger than webhooks.max_event_size.
pub(super) unsafe fn check_event_size(data: *mut pg_sys::varlena, source: &CStr) {
    let size = pgrx::varlena::varsize_any(data);
    let limit = crate::guc::MAX_EVENT_SIZE.get().max(0) as usize;
    if size > limit {
        ereport!(
            ERROR,
            PgSqlErrorCode::ERRCODE_PROGRAM_LIMIT_EXCEEDED,
            format!(
                "webhooks: an event of {} is {size} bytes, more than webhooks.max_event_size ({limit})",
                source.to_string_lossy()
            ),
            "Leave large columns out of the event (exclude_columns), shape it with a payload function, or raise \
             webhooks.max_event_size."
        );
    }
}

/// `webhooks.checked_event_size(data jsonb) RETURNS jsonb`, STRICT: the
/// document, or 54000 when it is bigger than webhooks.max_event_size (for
/// the events written in SQL: emit_own(), capture_commit()).
///
/// # Safety
/// Called by the function manager with one non-NULL argument.
#[no_mangle]
#[pg_guard]
pub unsafe extern "C-unwind" fn checked_event_size(fcinfo: pg_sys::FunctionCallInfo) -> pg_sys::Datum {
    let data = pgrx::fcinfo::pg_getarg_datum_raw(fcinfo, 0);
    check_event_size(data.cast_mut_ptr(), c"this transaction");
    data
}

fn text_datum(v: &str) -> pg_sys::Datum {
    pgrx::IntoDatum::into_datum(v).unwrap_or(pg_sys::Datum::from(0usize))
}

/// Writes (and empties) a batch, in row order so that event ids follow it,
/// as the extension's owner, into webhooks.event (webhooks.staged_change
/// for a deferred table), with one INSERT whose plan is kept for the
/// session: a one-row VALUES for a single event, else arrays unnested in
/// the select list (a ProjectSet reads them in place; in FROM they were
/// copied into a tuplestore, and a VALUES list of many rows compiles every
/// row's expressions as it scans).
pub(super) unsafe fn write(batch: &mut Vec<Change>, event: &str, s: &Settings, operation: &str) -> u64 {
    if batch.is_empty() {
        return 0;
    }
    let text = |v: Option<&str>| v.map(text_datum).unwrap_or(pg_sys::Datum::from(0usize));
    let mut values = vec![
        text_datum(event),
        pg_sys::Datum::from(pg_sys::cstring_to_text(s.source.as_ptr())),
        text_datum(operation),
    ];
    let mut nulls = vec![b' ' as std::ffi::c_char; 7];
    let null = |is_null: bool| if is_null { b'n' } else { b' ' } as std::ffi::c_char;
    let plan = if let [row] = &batch[..] {
        values.extend([
            text(row.key.as_deref()),
            text(row.tenant.as_deref()),
            pg_sys::Datum::from(row.data),
            pg_sys::Datum::from(row.previous),
        ]);
        nulls[3] = null(row.key.is_none());
        nulls[4] = null(row.tenant.is_none());
        nulls[6] = null(row.previous.is_null());
        kept_plan(
            usize::from(s.deferred) * 2,
            if s.deferred {
                c"INSERT INTO webhooks.staged_change (event, source, operation, key, tenant, data, previous) \
                  VALUES ($1, $2, $3, $4, $5, $6, $7)"
            } else {
                c"INSERT INTO webhooks.event (event, source, operation, key, tenant, data, previous) \
                  VALUES ($1, $2, $3, $4, $5, $6, $7)"
            },
            &mut [
                pg_sys::TEXTOID,
                pg_sys::TEXTOID,
                pg_sys::TEXTOID,
                pg_sys::TEXTOID,
                pg_sys::TEXTOID,
                pg_sys::JSONBOID,
                pg_sys::JSONBOID,
            ],
        )
    } else {
        let column = |each: &dyn Fn(&Change) -> (pg_sys::Datum, bool), typ: pg_sys::Oid| {
            let (mut elements, mut is_null): (Vec<pg_sys::Datum>, Vec<bool>) = batch.iter().map(each).unzip();
            let mut dims = [elements.len() as i32];
            let mut lbs = [1];
            pg_sys::Datum::from(pg_sys::construct_md_array(
                elements.as_mut_ptr(),
                is_null.as_mut_ptr(),
                1,
                dims.as_mut_ptr(),
                lbs.as_mut_ptr(),
                typ,
                -1,
                false,
                pg_sys::TYPALIGN_INT as std::ffi::c_char,
            ))
        };
        values.extend([
            column(&|r| (text(r.key.as_deref()), r.key.is_none()), pg_sys::TEXTOID),
            column(&|r| (text(r.tenant.as_deref()), r.tenant.is_none()), pg_sys::TEXTOID),
            column(&|r| (pg_sys::Datum::from(r.data), false), pg_sys::JSONBOID),
            column(
                &|r| (pg_sys::Datum::from(r.previous), r.previous.is_null()),
                pg_sys::JSONBOID,
            ),
        ]);
        kept_plan(
            usize::from(s.deferred) * 2 + 1,
            if s.deferred {
                c"INSERT INTO webhooks.staged_change (event, source, operation, key, tenant, data, previous) \
                  SELECT $1, $2, $3, pg_catalog.unnest($4), pg_catalog.unnest($5), pg_catalog.unnest($6), \
                         pg_catalog.unnest($7)"
            } else {
                c"INSERT INTO webhooks.event (event, source, operation, key, tenant, data, previous) \
                  SELECT $1, $2, $3, pg_catalog.unnest($4), pg_catalog.unnest($5), pg_catalog.unnest($6), \
                         pg_catalog.unnest($7)"
            },
            &mut [
                pg_sys::TEXTOID,
                pg_sys::TEXTOID,
                pg_sys::TEXTOID,
                pg_sys::TEXTARRAYOID,
                pg_sys::TEXTARRAYOID,
                pg_sys::JSONBARRAYOID,
                pg_sys::JSONBARRAYOID,
            ],
        )
    };
    batch.clear();
    let rc = as_owner(|| pg_sys::SPI_execute_plan(plan, values.as_mut_ptr(), nulls.as_mut_ptr(), false, 0));
    if rc != pg_sys::SPI_OK_INSERT as i32 {
        ereport!(
            ERROR,
            PgSqlErrorCode::ERRCODE_INTERNAL_ERROR,
            format!("webhooks.capture: inserting events failed (SPI code {rc})")
        );
    }
    pg_sys::SPI_processed
}

/// A statement prepared once per session (generic: its plan does not
/// depend on the values).
unsafe fn kept_plan(which: usize, sql: &CStr, types: &mut [pg_sys::Oid]) -> pg_sys::SPIPlanPtr {
    PLANS.with(|plans| {
        let mut plans = plans.borrow_mut();
        let p = &mut plans[which];
        if p.is_null() {
            // As the owner: parsing it needs rights on schema webhooks.
            let prepared = as_owner(|| {
                pg_sys::SPI_prepare_cursor(
                    sql.as_ptr(),
                    types.len() as i32,
                    types.as_mut_ptr(),
                    pg_sys::CURSOR_OPT_GENERIC_PLAN as i32,
                )
            });
            pg_sys::SPI_keepplan(prepared);
            *p = prepared;
        }
        *p
    })
}
