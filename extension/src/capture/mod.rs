//! The capture engine: `webhooks.capture()`, the statement-level trigger of
//! tracked tables, and `webhooks.capture_event()`, the row-level trigger of
//! business events. Every rule that turns a row change into an event (key
//! text, `previous`, sent and listed columns, tenant, event name, payload
//! function, staging for deferred tables) is in this module and nowhere
//! else.
//!
//! Trust: the settings are read from webhooks.source (or source_event),
//! keyed by the table the trigger fires on — never by a trigger argument —
//! so a capture trigger a role made by hand on another table raises 42501.
//! The engine runs as the writer: rows are made into JSON, and casts and
//! output functions of the table's types run, with the writer's rights. A
//! payload function runs as its owner, with a fixed search_path, in a
//! security-restricted operation. Only reading the settings and writing the
//! event rows switch to the extension's owner (`as_owner`), with statements
//! that name everything with its schema and take values as parameters.
//!
//! The statement's rows are read straight from its transition tables, made
//! into JSON with row_json's conversions, and written by prepared INSERTs
//! (one row's with `VALUES`, more rows' 256 at a time from arrays). The old
//! and new transition tables hold an UPDATE's versions of a row at the same
//! position, so they are paired by position; a row whose key changed is
//! sent without `previous`.
//!
//! Settings are kept per backend and dropped when the table's relcache
//! entry is invalidated: webhooks.source_changed() invalidates it on every
//! change of the settings, and Postgres on every ALTER TABLE.
//!
//! This file holds the triggers and the loop over a statement's rows; the
//! steps they take live beside it, one concern a file:
//! - `settings`: reading a table's settings and keeping them per backend;
//! - `rights`: whose rights each step runs with, and who may turn capture off;
//! - `change`: from a row (and its old version) to the change it makes;
//! - `payload`: running a table's payload function as its owner;
//! - `events`: writing events or staged changes, and the event size limit;
//! - `deferred`: what deferred tables staged, flushed before commit.

/// The `pg_finfo_*` record the function manager looks up for a C function
/// declared in the extension's SQL (version 1 calling convention).
macro_rules! finfo {
    ($name:ident) => {
        #[no_mangle]
        #[doc(hidden)]
        pub extern "C" fn $name() -> &'static pg_sys::Pg_finfo_record {
            static V1: pg_sys::Pg_finfo_record = pg_sys::Pg_finfo_record { api_version: 1 };
            &V1
        }
    };
}

pub mod change;
pub mod deferred;
pub mod events;
pub mod payload;
pub mod rights;
pub mod settings;

pub(crate) use payload::search_path_ends_with_pg_temp;
pub(crate) use rights::capture_on;

use crate::row_json::json_values;
use change::{change_of, columns_for, keys_differ, rekeyed, table_cache, Reader, RowValues};
use events::write;
use payload::with_payload;
use pgrx::pg_sys;
use pgrx::prelude::*;
use pgrx::PgSqlErrorCode;
use settings::{event_settings_for, settings_for, EventName, Settings};
use std::ptr;

finfo!(pg_finfo_capture);
finfo!(pg_finfo_capture_event);

/// Registers the invalidation and transaction callbacks (from `_PG_init`,
/// once per backend).
pub fn register_callbacks() {
    unsafe {
        pg_sys::CacheRegisterRelcacheCallback(Some(settings::forget_settings), pg_sys::Datum::from(0usize));
        pg_sys::RegisterXactCallback(Some(deferred::at_transaction_end), ptr::null_mut());
    }
}

/// The trigger call's TriggerData, checking how the trigger was made.
unsafe fn trigger_data(fcinfo: pg_sys::FunctionCallInfo, name: &str, row_level: bool) -> *mut pg_sys::TriggerData {
    let context = (*fcinfo).context;
    if context.is_null() || (*context).type_ != pg_sys::NodeTag::T_TriggerData {
        ereport!(
            ERROR,
            PgSqlErrorCode::ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED,
            format!("{name} is a trigger function")
        );
    }
    let trigdata = context.cast::<pg_sys::TriggerData>();
    let event = (*trigdata).tg_event;
    let after = event & pg_sys::TRIGGER_EVENT_TIMINGMASK == pg_sys::TRIGGER_EVENT_AFTER;
    let row = event & pg_sys::TRIGGER_EVENT_ROW != 0;
    if !after || row != row_level {
        ereport!(
            ERROR,
            PgSqlErrorCode::ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED,
            format!(
                "{name} must be fired AFTER ... FOR EACH {}",
                if row_level { "ROW" } else { "STATEMENT" }
            )
        );
    }
    trigdata
}

/// # Safety
/// Called by the trigger manager (AFTER ... FOR EACH STATEMENT, with
/// transition tables).
#[no_mangle]
#[pg_guard]
pub unsafe extern "C-unwind" fn capture(fcinfo: pg_sys::FunctionCallInfo) -> pg_sys::Datum {
    let trigdata = trigger_data(fcinfo, "webhooks.capture()", false);
    let rel = (*trigdata).tg_relation;
    let settings = settings_for(rel);
    if !capture_on() {
        return pg_sys::Datum::from(0usize);
    }
    let op = (*trigdata).tg_event & pg_sys::TRIGGER_EVENT_OPMASK;
    let (new_rows, old_rows) = ((*trigdata).tg_newtable, (*trigdata).tg_oldtable);
    let store = if op == pg_sys::TRIGGER_EVENT_DELETE {
        old_rows
    } else {
        new_rows
    };
    if store.is_null() || (op == pg_sys::TRIGGER_EVENT_UPDATE && old_rows.is_null()) {
        ereport!(
            ERROR,
            PgSqlErrorCode::ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED,
            "webhooks.capture() needs the statement's transition tables (REFERENCING ... TABLE AS ...)"
        );
    }
    if op == pg_sys::TRIGGER_EVENT_UPDATE
        && pg_sys::tuplestore_tuple_count(old_rows) != pg_sys::tuplestore_tuple_count(new_rows)
    {
        ereport!(
            ERROR,
            PgSqlErrorCode::ERRCODE_INTERNAL_ERROR,
            "webhooks.capture: the old and new transition tables differ in length"
        );
    }
    capture_rows(trigdata, op, &settings);
    pg_sys::Datum::from(0usize)
}

/// # Safety
/// Called by the trigger manager (AFTER INSERT OR UPDATE ... FOR EACH ROW,
/// with the business event's WHEN clause).
#[no_mangle]
#[pg_guard]
pub unsafe extern "C-unwind" fn capture_event(fcinfo: pg_sys::FunctionCallInfo) -> pg_sys::Datum {
    let trigdata = trigger_data(fcinfo, "webhooks.capture_event()", true);
    let rel = (*trigdata).tg_relation;
    let trigger = (*trigdata).tg_trigger;
    let settings = event_settings_for(rel, trigger);
    if !capture_on() {
        return pg_sys::Datum::from(0usize);
    }
    let op = (*trigdata).tg_event & pg_sys::TRIGGER_EVENT_OPMASK;
    let tupdesc = (*rel).rd_att;
    let cache = table_cache(rel);
    let columns = columns_for(cache, &settings);
    let deform = |tuple: pg_sys::HeapTuple| {
        let natts = (*cache).natts;
        let values = pg_sys::palloc(natts.max(1) * std::mem::size_of::<pg_sys::Datum>()).cast::<pg_sys::Datum>();
        let nulls = pg_sys::palloc(natts.max(1)).cast::<bool>();
        pg_sys::heap_deform_tuple(tuple, tupdesc, values, nulls);
        (values, nulls)
    };
    let (new_tuple, old_tuple) = if op == pg_sys::TRIGGER_EVENT_UPDATE {
        ((*trigdata).tg_newtuple, Some((*trigdata).tg_trigtuple))
    } else {
        ((*trigdata).tg_trigtuple, None)
    };
    let (values, nulls) = deform(new_tuple);
    let row = RowValues {
        values: json_values(cache, tupdesc, values, nulls),
    };
    let old = old_tuple.map(|t| {
        let (old_values, old_nulls) = deform(t);
        let key_changed = keys_differ(tupdesc, &columns.keys, (values, nulls), (old_values, old_nulls));
        (
            RowValues {
                values: json_values(cache, tupdesc, old_values, old_nulls),
            },
            key_changed,
        )
    });
    // The WHEN clause decided: an event even if no sent column changed.
    let Some(change) = change_of(&columns, row, old, true) else {
        return pg_sys::Datum::from(0usize);
    };
    let EventName::Business(event) = &settings.event else {
        return pg_sys::Datum::from(0usize);
    };
    let operation = if op == pg_sys::TRIGGER_EVENT_UPDATE {
        "UPDATE"
    } else {
        "INSERT"
    };
    pg_sys::SPI_connect();
    let mut batch = vec![with_payload(change, &settings)];
    write(&mut batch, event, &settings, operation);
    pg_sys::SPI_finish();
    crate::notify::notify_once();
    pg_sys::Datum::from(0usize)
}

/// Rows written per INSERT of a many-row statement: enough that the
/// statement's overhead vanishes, few enough that their documents fit the
/// block the batch's memory context keeps (allocating and unmapping bigger
/// ones cost more than the INSERTs).
const BATCH_ROWS: usize = 256;
const BATCH_MEMORY: usize = 1 << 20;

/// Captures the statement's rows. The old and new transition tables hold an
/// UPDATE's versions of a row at the same position (the trigger manager adds
/// each row's old and new version together), so they are paired by
/// position; a row whose key changed is sent without `previous`.
unsafe fn capture_rows(trigdata: *mut pg_sys::TriggerData, op: u32, s: &Settings) {
    let rel = (*trigdata).tg_relation;
    let tupdesc = (*rel).rd_att;
    let cache = table_cache(rel);
    let natts = (*cache).natts;
    let (operation, kind, store) = match op {
        pg_sys::TRIGGER_EVENT_INSERT => ("INSERT", "created", (*trigdata).tg_newtable),
        pg_sys::TRIGGER_EVENT_DELETE => ("DELETE", "deleted", (*trigdata).tg_oldtable),
        _ => ("UPDATE", "updated", (*trigdata).tg_newtable),
    };
    let rows = pg_sys::tuplestore_tuple_count(store);
    let mut new = Reader::new(store, tupdesc);
    let mut old = (op == pg_sys::TRIGGER_EVENT_UPDATE).then(|| Reader::new((*trigdata).tg_oldtable, tupdesc));
    let columns = columns_for(cache, s);
    let event = match &s.event {
        EventName::Resource(resource) => format!("{resource}.{kind}"),
        EventName::Business(event) => event.clone(),
    };
    pg_sys::SPI_connect();
    // A many-row statement's values and documents are made in a context of
    // their own, reset after each batch; rows are read outside it (see
    // Reader::mcxt). One row's go with SPI's context.
    let values_cxt = (rows > 1).then(|| {
        pg_sys::AllocSetContextCreateExtended(
            pg_sys::CurrentMemoryContext,
            c"webhooks capture".as_ptr(),
            BATCH_MEMORY,
            BATCH_MEMORY,
            BATCH_MEMORY,
        )
    });
    let mut batch = Vec::with_capacity(BATCH_ROWS.min(rows as usize));
    let mut written = 0u64;
    if let Some(values_cxt) = values_cxt {
        pg_sys::MemoryContextSwitchTo(values_cxt);
    }
    while new.next(natts) {
        let old_values = match old.as_mut() {
            Some(old) => {
                if !old.next(natts) {
                    ereport!(
                        ERROR,
                        PgSqlErrorCode::ERRCODE_INTERNAL_ERROR,
                        "webhooks.capture: the old and new transition tables differ in length"
                    );
                }
                Some((old.values(cache), rekeyed(new.slot, old.slot, &columns.keys)))
            }
            None => None,
        };
        if let Some(change) = change_of(&columns, new.values(cache), old_values, false) {
            batch.push(with_payload(change, s));
        }
        if batch.len() == BATCH_ROWS {
            written += write(&mut batch, &event, s, operation);
            if let Some(values_cxt) = values_cxt {
                pg_sys::MemoryContextReset(values_cxt);
                // (SPI returns in its own context.)
                pg_sys::MemoryContextSwitchTo(values_cxt);
            }
        }
    }
    written += write(&mut batch, &event, s, operation);
    pg_sys::SPI_finish();
    drop(old);
    drop(new);
    // (Staged changes notify when capture_commit() makes them events.)
    if written > 0 && !s.deferred {
        crate::notify::notify_once();
    }
    if written > 0 && s.deferred {
        deferred::stage(s.relid);
    }
}
