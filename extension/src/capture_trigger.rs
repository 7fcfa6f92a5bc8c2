//! `webhooks.capture()`: the statement-level trigger of tracked tables.
//!
//! A one-row statement (most OLTP writes) is captured here: the old and new
//! row are read straight from the statement's transition tables, made into
//! JSON with row_jsonb's conversions, and written with one prepared
//! `INSERT ... VALUES`. Scanning the transition tables through SQL instead
//! cost three statements' executor start-up per one-row UPDATE, most of a
//! one-row capture's time (perf). Everything else — statements of several
//! rows, tables with a payload function or with column types row_jsonb does
//! not handle — goes to the table's generated PL/pgSQL function (the
//! trigger's argument), which stays the reference for what is captured.
//!
//! The table's settings come from webhooks.source, cached per backend and
//! read again whenever the generated function is regenerated (track(), and
//! the ALTER TABLE event trigger, always regenerate it).

use crate::capture_json::{each_value, kind_of, same, string_value, valid_cache, Object, RowCache};
use pgrx::pg_sys;
use pgrx::prelude::*;
use pgrx::PgSqlErrorCode;
use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::{CStr, CString};
use std::ptr;
use std::rc::Rc;

#[no_mangle]
#[doc(hidden)]
pub extern "C" fn pg_finfo_capture() -> &'static pg_sys::Pg_finfo_record {
    static V1: pg_sys::Pg_finfo_record = pg_sys::Pg_finfo_record { api_version: 1 };
    &V1
}

/// A tracked table's settings, as of one version of its generated function.
struct Settings {
    /// The generated function's catalog row (xmin, ctid): a new one means
    /// the settings may have changed.
    version: (u32, u32, u16),
    function: pg_sys::Oid,
    resource: String,
    source: CString,
    keys: Vec<CString>,
    tenant: Option<CString>,
    exclude: Vec<CString>,
    columns: Option<Vec<CString>>,
    /// Payload function or deferred capture: always the generated function
    /// (deferred tables stage through it too).
    generated_only: bool,
}

thread_local! {
    static SETTINGS: RefCell<HashMap<pg_sys::Oid, Rc<Settings>>> = RefCell::new(HashMap::new());
    // Per table: each column's conversion, kept across statements (checked
    // against the table's columns on every use).
    static ROW_CACHES: RefCell<HashMap<pg_sys::Oid, *mut RowCache>> = RefCell::new(HashMap::new());
    static INSERT_PLAN: RefCell<pg_sys::SPIPlanPtr> = const { RefCell::new(ptr::null_mut()) };
    static FUNCTION_OF_TRIGGER: RefCell<HashMap<pg_sys::Oid, pg_sys::Oid>> = RefCell::new(HashMap::new());
}

/// # Safety
/// Called by the trigger manager (AFTER ... FOR EACH STATEMENT, with
/// transition tables), with the generated function as its one argument.
#[no_mangle]
#[pg_guard]
pub unsafe extern "C-unwind" fn capture(fcinfo: pg_sys::FunctionCallInfo) -> pg_sys::Datum {
    let context = (*fcinfo).context;
    if context.is_null() || (*context).type_ != pg_sys::NodeTag::T_TriggerData {
        ereport!(
            ERROR,
            PgSqlErrorCode::ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED,
            "webhooks.capture() is a trigger function"
        );
    }
    let trigdata = context.cast::<pg_sys::TriggerData>();
    if !crate::CAPTURE.get() {
        return pg_sys::Datum::from(0usize);
    }
    let trigger = (*trigdata).tg_trigger;
    if (*trigger).tgnargs != 1 {
        ereport!(
            ERROR,
            PgSqlErrorCode::ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED,
            "webhooks.capture() takes the generated capture function as its argument"
        );
    }
    let rel = (*trigdata).tg_relation;
    // An Rc, not a borrow of the cache: capture can nest (a payload function
    // writing to another tracked table).
    let settings = settings_for((*rel).rd_id, trigger);
    let op = (*trigdata).tg_event & pg_sys::TRIGGER_EVENT_OPMASK;
    let store = if op == pg_sys::TRIGGER_EVENT_DELETE {
        (*trigdata).tg_oldtable
    } else {
        (*trigdata).tg_newtable
    };
    let tupdesc = (*rel).rd_att;
    let natts = (*tupdesc).natts as usize;
    let handled = (*tupdesc)
        .attrs
        .as_slice(natts)
        .iter()
        .all(|a| a.attisdropped || kind_of(a.atttypid).is_some());
    if settings.generated_only || !handled || store.is_null() || pg_sys::tuplestore_tuple_count(store) != 1 {
        return call_generated(settings.function, fcinfo);
    }
    capture_one_row(trigdata, op, &settings);
    pg_sys::Datum::from(0usize)
}

/// The generated PL/pgSQL function, called as this same trigger.
unsafe fn call_generated(function: pg_sys::Oid, fcinfo: pg_sys::FunctionCallInfo) -> pg_sys::Datum {
    let flinfo = pg_sys::palloc0(std::mem::size_of::<pg_sys::FmgrInfo>()).cast::<pg_sys::FmgrInfo>();
    pg_sys::fmgr_info(function, flinfo);
    let call = pg_sys::palloc0(std::mem::size_of::<pg_sys::FunctionCallInfoBaseData>())
        .cast::<pg_sys::FunctionCallInfoBaseData>();
    (*call).flinfo = flinfo;
    (*call).context = (*fcinfo).context;
    (*call).fncollation = pg_sys::InvalidOid;
    (*call).nargs = 0;
    let Some(address) = (*flinfo).fn_addr else {
        return pg_sys::Datum::from(0usize);
    };
    pg_sys::submodules::ffi::pg_guard_ffi_boundary(|| address(call))
}

/// The table's settings: loaded (or reloaded) when the generated function is
/// new or has been regenerated.
unsafe fn settings_for(relid: pg_sys::Oid, trigger: *mut pg_sys::Trigger) -> Rc<Settings> {
    // The argument names the generated function; a trigger's arguments
    // never change (track() makes new triggers), so resolve it once.
    let tgoid = (*trigger).tgoid;
    let function = match FUNCTION_OF_TRIGGER.with(|m| m.borrow().get(&tgoid).copied()) {
        Some(function) => function,
        None => {
            let function = pgrx::direct_function_call::<pg_sys::Oid>(
                pg_sys::regprocedurein,
                &[Some(pg_sys::Datum::from(*(*trigger).tgargs))],
            )
            .unwrap_or(pg_sys::InvalidOid);
            FUNCTION_OF_TRIGGER.with(|m| m.borrow_mut().insert(tgoid, function));
            function
        }
    };
    let version = catalog_version(function);
    let cached = SETTINGS.with(|all| all.borrow().get(&function).cloned());
    match cached {
        Some(settings) if settings.version == version => settings,
        _ => {
            let settings = Rc::new(load_settings(relid, function, version));
            SETTINGS.with(|all| all.borrow_mut().insert(function, settings.clone()));
            settings
        }
    }
}

/// (xmin, block, offset) of the function's pg_proc row.
unsafe fn catalog_version(function: pg_sys::Oid) -> (u32, u32, u16) {
    let tuple = pg_sys::SearchSysCache1(
        pg_sys::SysCacheIdentifier::PROCOID as i32,
        pg_sys::Datum::from(function),
    );
    if tuple.is_null() {
        ereport!(
            ERROR,
            PgSqlErrorCode::ERRCODE_UNDEFINED_FUNCTION,
            "webhooks.capture: the generated capture function is missing"
        );
    }
    let header = (*tuple).t_data;
    let xmin = (*header).t_choice.t_heap.t_xmin;
    let tid = (*tuple).t_self;
    let block = (u32::from(tid.ip_blkid.bi_hi) << 16) | u32::from(tid.ip_blkid.bi_lo);
    let version = (xmin.into_inner(), block, tid.ip_posid);
    pg_sys::ReleaseSysCache(tuple);
    version
}

fn cstrings(v: Option<Vec<Option<String>>>) -> Vec<CString> {
    v.unwrap_or_default()
        .into_iter()
        .flatten()
        .filter_map(|s| CString::new(s).ok())
        .collect()
}

unsafe fn load_settings(relid: pg_sys::Oid, function: pg_sys::Oid, version: (u32, u32, u16)) -> Settings {
    // Runs with the writer's search_path (as the extension's owner): every
    // type, operator and function is named with its schema.
    let query = format!(
        "SELECT s.resource, s.key_columns::pg_catalog.text[], s.tenant_column::pg_catalog.text, \
                s.exclude_columns::pg_catalog.text[], s.columns::pg_catalog.text[], \
                s.payload IS NOT NULL OR s.deferred, pg_catalog.format('%I.%I', n.nspname, c.relname) \
           FROM webhooks.source s \
           JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) s.source::pg_catalog.oid \
           JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace \
          WHERE s.source OPERATOR(pg_catalog.=) {}::pg_catalog.oid::pg_catalog.regclass",
        relid.to_u32()
    );
    let loaded = Spi::connect(|client| {
        let table = client.select(&query, Some(1), &[])?;
        let row = table.first();
        Ok::<_, pgrx::spi::Error>((
            row.get::<String>(1)?,
            row.get::<Vec<Option<String>>>(2)?,
            row.get::<String>(3)?,
            row.get::<Vec<Option<String>>>(4)?,
            row.get::<Vec<Option<String>>>(5)?,
            row.get::<bool>(6)?,
            row.get::<String>(7)?,
        ))
    });
    let Ok((Some(resource), keys, tenant, exclude, columns, Some(generated_only), Some(source))) = loaded else {
        ereport!(
            ERROR,
            PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            "webhooks.capture: the table is not tracked (no row in webhooks.source)"
        );
    };
    Settings {
        version,
        function,
        resource,
        source: CString::new(source).unwrap_or_default(),
        keys: cstrings(keys),
        tenant: tenant.and_then(|t| CString::new(t).ok()),
        exclude: cstrings(exclude),
        columns: columns.map(|c| cstrings(Some(c))),
        generated_only,
    }
}

/// One row's columns as JSON values, in column order (dropped ones absent).
struct RowValues {
    names: Vec<&'static CStr>,
    values: Vec<pg_sys::JsonbValue>,
    /// Holds the row (values may point into it) and pins the relation's
    /// tuple descriptor until dropped.
    slot: *mut pg_sys::TupleTableSlot,
}

impl Drop for RowValues {
    fn drop(&mut self) {
        unsafe { pg_sys::ExecDropSingleTupleTableSlot(self.slot) };
    }
}

unsafe fn read_row(cache: *mut RowCache, tupdesc: pg_sys::TupleDesc, store: *mut pg_sys::Tuplestorestate) -> RowValues {
    // A read pointer of our own: other triggers of the statement read the
    // same transition table.
    let reader = pg_sys::tuplestore_alloc_read_pointer(store, pg_sys::EXEC_FLAG_REWIND as i32);
    pg_sys::tuplestore_select_read_pointer(store, reader);
    pg_sys::tuplestore_rescan(store);
    let slot = pg_sys::MakeSingleTupleTableSlot(tupdesc, &pg_sys::TTSOpsMinimalTuple);
    pg_sys::tuplestore_gettupleslot(store, true, false, slot);
    let natts = (*cache).natts;
    pg_sys::slot_getsomeattrs_int(slot, natts as i32);
    let mut row = RowValues {
        names: Vec::with_capacity(natts),
        values: Vec::with_capacity(natts),
        slot,
    };
    each_value(
        cache,
        tupdesc,
        (*slot).tts_values,
        (*slot).tts_isnull,
        |column, value| {
            row.names.push(CStr::from_ptr(column.name));
            row.values.push(value);
        },
    );
    row
}

/// The text of a JSON value as `->>` gives it; None for JSON null.
unsafe fn value_text(v: &pg_sys::JsonbValue) -> Option<String> {
    use pg_sys::jbvType::{jbvBool as BOOL, jbvNull as NULL, jbvNumeric as NUMERIC, jbvString as STRING};
    match v.type_ {
        NULL => None,
        STRING => {
            let s = v.val.string;
            let bytes = if s.len <= 0 {
                &[][..]
            } else {
                std::slice::from_raw_parts(s.val.cast::<u8>(), s.len as usize)
            };
            Some(String::from_utf8_lossy(bytes).into_owned())
        }
        BOOL => Some(if v.val.boolean { "true" } else { "false" }.to_owned()),
        NUMERIC => pgrx::direct_function_call::<pg_sys::Datum>(
            pg_sys::numeric_out,
            &[Some(pg_sys::Datum::from(v.val.numeric))],
        )
        .map(|d| {
            CStr::from_ptr(d.cast_mut_ptr::<std::ffi::c_char>())
                .to_string_lossy()
                .into_owned()
        }),
        _ => None,
    }
}

/// Values of the named columns joined by commas (the event's key or tenant);
/// None if any is NULL or missing.
unsafe fn joined(row: &RowValues, names: &[CString]) -> Option<String> {
    let mut parts = Vec::with_capacity(names.len());
    for name in names {
        let i = row.names.iter().position(|n| *n == name.as_c_str())?;
        parts.push(value_text(&row.values[i])?);
    }
    Some(parts.join(","))
}

unsafe fn document(row: &mut RowValues, exclude: &[CString], keep: impl Fn(usize) -> bool) -> Object {
    let mut object = Object::new();
    for i in 0..row.values.len() {
        if exclude.iter().any(|e| e.as_c_str() == row.names[i]) || !keep(i) {
            continue;
        }
        let name = row.names[i];
        let mut key = string_value(name.as_ptr().cast_mut(), name.to_bytes().len());
        object.push(&mut key, &mut row.values[i]);
    }
    object
}

unsafe fn capture_one_row(trigdata: *mut pg_sys::TriggerData, op: u32, s: &Settings) {
    let rel = (*trigdata).tg_relation;
    let tupdesc = (*rel).rd_att;
    let relid = (*rel).rd_id;
    let cached = ROW_CACHES
        .with(|c| c.borrow().get(&relid).copied())
        .unwrap_or(ptr::null_mut());
    let cache = valid_cache(cached, pg_sys::TopMemoryContext, tupdesc);
    if cache != cached {
        ROW_CACHES.with(|c| c.borrow_mut().insert(relid, cache));
    }
    let (operation, kind, mut row, old) = match op {
        pg_sys::TRIGGER_EVENT_INSERT => (
            "INSERT",
            "created",
            read_row(cache, tupdesc, (*trigdata).tg_newtable),
            None,
        ),
        pg_sys::TRIGGER_EVENT_DELETE => (
            "DELETE",
            "deleted",
            read_row(cache, tupdesc, (*trigdata).tg_oldtable),
            None,
        ),
        _ => (
            "UPDATE",
            "updated",
            read_row(cache, tupdesc, (*trigdata).tg_newtable),
            Some(read_row(cache, tupdesc, (*trigdata).tg_oldtable)),
        ),
    };
    let key = joined(&row, &s.keys);
    let tenant = s.tenant.as_ref().and_then(|t| joined(&row, std::slice::from_ref(t)));
    let mut previous = ptr::null_mut();
    if let Some(mut old) = old {
        let rekeyed = joined(&old, &s.keys) != key;
        if !rekeyed {
            let changed: Vec<bool> = (0..row.values.len())
                .map(|i| !same(&old.values[i], &row.values[i]))
                .collect();
            let sent_change = (0..changed.len()).any(|i| {
                changed[i]
                    && !s.exclude.iter().any(|e| e.as_c_str() == row.names[i])
                    && s.columns
                        .as_ref()
                        .is_none_or(|c| c.iter().any(|c| c.as_c_str() == row.names[i]))
            });
            if !sent_change {
                return; // a no-op UPDATE, or only excluded or unlisted columns changed
            }
            previous = document(&mut old, &s.exclude, |i| changed[i]).finish();
        }
    }
    let data = document(&mut row, &s.exclude, |_| true).finish();
    insert_event(
        &format!("{}.{kind}", s.resource),
        s,
        operation,
        key,
        tenant,
        data,
        previous,
    );
    crate::notify_once();
}

unsafe fn insert_event(
    event: &str,
    s: &Settings,
    operation: &str,
    key: Option<String>,
    tenant: Option<String>,
    data: *mut pg_sys::Jsonb,
    previous: *mut pg_sys::Jsonb,
) {
    let text = |v: &str| pgrx::IntoDatum::into_datum(v).unwrap_or(pg_sys::Datum::from(0usize));
    let mut values = [
        text(event),
        pg_sys::Datum::from(pg_sys::cstring_to_text(s.source.as_ptr())),
        text(operation),
        key.as_deref().map(text).unwrap_or(pg_sys::Datum::from(0usize)),
        tenant.as_deref().map(text).unwrap_or(pg_sys::Datum::from(0usize)),
        pg_sys::Datum::from(data),
        pg_sys::Datum::from(previous),
    ];
    let mut nulls: [std::ffi::c_char; 7] = [
        b' ' as _,
        b' ' as _,
        b' ' as _,
        if key.is_none() { b'n' } else { b' ' } as _,
        if tenant.is_none() { b'n' } else { b' ' } as _,
        b' ' as _,
        if previous.is_null() { b'n' } else { b' ' } as _,
    ];
    pg_sys::SPI_connect();
    let plan = INSERT_PLAN.with(|p| {
        let mut p = p.borrow_mut();
        if p.is_null() {
            let mut types = [
                pg_sys::TEXTOID,
                pg_sys::TEXTOID,
                pg_sys::TEXTOID,
                pg_sys::TEXTOID,
                pg_sys::TEXTOID,
                pg_sys::JSONBOID,
                pg_sys::JSONBOID,
            ];
            let sql = c"INSERT INTO webhooks.event (event, source, operation, key, tenant, data, previous) \
                        VALUES ($1, $2, $3, $4, $5, $6, $7)";
            let prepared = pg_sys::SPI_prepare(sql.as_ptr(), 7, types.as_mut_ptr());
            pg_sys::SPI_keepplan(prepared);
            *p = prepared;
        }
        *p
    });
    let rc = pg_sys::SPI_execute_plan(plan, values.as_mut_ptr(), nulls.as_mut_ptr(), false, 0);
    if rc != pg_sys::SPI_OK_INSERT as i32 {
        ereport!(
            ERROR,
            PgSqlErrorCode::ERRCODE_INTERNAL_ERROR,
            format!("webhooks.capture: inserting the event failed (SPI code {rc})")
        );
    }
    pg_sys::SPI_finish();
}
