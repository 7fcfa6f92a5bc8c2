//! `webhooks.capture()`: the statement-level trigger of tracked tables.
//!
//! The statement's rows are read straight from its transition tables, made
//! into JSON with row_jsonb's conversions, and written by prepared INSERTs
//! (one row's with `VALUES`, more rows' 256 at a time from arrays). Scanning
//! the transition tables through SQL instead cost three statements' executor
//! start-up per one-row UPDATE (most of a one-row capture's time, perf), and
//! on a 100k-row UPDATE a sort and a join to pair old and new rows by key.
//! Tables with a payload function, deferred capture or column types
//! row_jsonb does not handle — and many-row UPDATEs that change a key — go
//! to the table's generated PL/pgSQL function (the trigger's argument),
//! which stays the reference for what is captured.
//!
//! The table's settings come from webhooks.source, cached per backend and
//! read again whenever the generated function is regenerated (track(), and
//! the ALTER TABLE event trigger, always regenerate it).

use crate::capture_json::{json_values, kind_of, row_object, same, valid_cache, RowCache};
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
    /// Worked out from these settings and the table's columns on first use.
    table_columns: RefCell<Option<Rc<Columns>>>,
}

thread_local! {
    static SETTINGS: RefCell<HashMap<pg_sys::Oid, Rc<Settings>>> = RefCell::new(HashMap::new());
    // Per table: each column's conversion, kept across statements (checked
    // against the table's columns on every use).
    static ROW_CACHES: RefCell<HashMap<pg_sys::Oid, *mut RowCache>> = RefCell::new(HashMap::new());
    static ONE_ROW_PLAN: RefCell<pg_sys::SPIPlanPtr> = const { RefCell::new(ptr::null_mut()) };
    static BATCH_PLAN: RefCell<pg_sys::SPIPlanPtr> = const { RefCell::new(ptr::null_mut()) };
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
    let old_rows = (*trigdata).tg_oldtable;
    let paired = op != pg_sys::TRIGGER_EVENT_UPDATE
        || (!old_rows.is_null() && pg_sys::tuplestore_tuple_count(old_rows) == pg_sys::tuplestore_tuple_count(store));
    if settings.generated_only || !handled || store.is_null() || !paired || !capture_rows(trigdata, op, &settings) {
        return call_generated(settings.function, fcinfo);
    }
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
        table_columns: RefCell::new(None),
    }
}

/// One row's columns as JSON values, in column order (dropped ones absent).
/// Values may point into the row its reader last returned.
struct RowValues {
    values: Vec<pg_sys::JsonbValue>,
}

/// Reads a transition table from its start with a read pointer of its own:
/// other triggers of the statement read the same table.
struct Reader {
    store: *mut pg_sys::Tuplestorestate,
    pointer: i32,
    slot: *mut pg_sys::TupleTableSlot,
    /// Where rows are read: a spilled tuplestore allocates the row it
    /// returns in the current context, and the slot frees it on the next
    /// read, so that context must outlive the reading.
    mcxt: pg_sys::MemoryContext,
}

impl Reader {
    unsafe fn new(store: *mut pg_sys::Tuplestorestate, tupdesc: pg_sys::TupleDesc) -> Self {
        let pointer = pg_sys::tuplestore_alloc_read_pointer(store, pg_sys::EXEC_FLAG_REWIND as i32);
        pg_sys::tuplestore_select_read_pointer(store, pointer);
        pg_sys::tuplestore_rescan(store);
        Reader {
            store,
            pointer,
            slot: pg_sys::MakeSingleTupleTableSlot(tupdesc, &pg_sys::TTSOpsMinimalTuple),
            mcxt: pg_sys::CurrentMemoryContext,
        }
    }

    /// Moves to the next row, deformed up to column `natts`; false at the end.
    unsafe fn next(&mut self, natts: usize) -> bool {
        let outer = pg_sys::MemoryContextSwitchTo(self.mcxt);
        pg_sys::tuplestore_select_read_pointer(self.store, self.pointer);
        let found = pg_sys::tuplestore_gettupleslot(self.store, true, false, self.slot);
        if found {
            pg_sys::slot_getsomeattrs_int(self.slot, natts as i32);
        }
        pg_sys::MemoryContextSwitchTo(outer);
        found
    }

    unsafe fn rewind(&mut self) {
        pg_sys::tuplestore_select_read_pointer(self.store, self.pointer);
        pg_sys::tuplestore_rescan(self.store);
    }

    unsafe fn values(&self, cache: *mut RowCache) -> RowValues {
        RowValues {
            values: json_values(
                cache,
                (*self.slot).tts_tupleDescriptor,
                (*self.slot).tts_values,
                (*self.slot).tts_isnull,
            ),
        }
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        // Also unpins the relation's tuple descriptor.
        unsafe { pg_sys::ExecDropSingleTupleTableSlot(self.slot) };
    }
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
unsafe fn joined(row: &RowValues, columns: &[Option<usize>]) -> Option<String> {
    let mut parts = Vec::with_capacity(columns.len());
    for i in columns {
        parts.push(value_text(&row.values[(*i)?])?);
    }
    Some(parts.join(","))
}

/// What a statement needs to know about the table's columns, worked out
/// once per statement rather than per row. Indexes are into RowValues
/// (columns that are not dropped), except `keys`.
struct Columns {
    /// The column conversions these were worked out with (a new cache means
    /// the table's columns changed).
    cache: *mut RowCache,
    /// Not excluded.
    sent: Vec<bool>,
    /// Sent and, with `columns =>`, listed: a change to one makes an UPDATE
    /// an event.
    listed: Vec<bool>,
    /// The key columns' attribute indexes.
    keys: Vec<usize>,
    /// The key columns and the tenant column (None if missing).
    key_values: Vec<Option<usize>>,
    tenant_value: Vec<Option<usize>>,
}

/// The statement's Columns: kept with the settings while the table's
/// columns are those they were worked out for.
unsafe fn columns_for(cache: *mut RowCache, s: &Settings) -> Rc<Columns> {
    if let Some(columns) = s.table_columns.borrow().as_ref() {
        if columns.cache == cache {
            return columns.clone();
        }
    }
    let columns = Rc::new(columns_of(cache, s));
    *s.table_columns.borrow_mut() = Some(columns.clone());
    columns
}

unsafe fn columns_of(cache: *mut RowCache, s: &Settings) -> Columns {
    let mut names: Vec<&CStr> = Vec::new();
    let mut keys = Vec::new();
    for i in 0..(*cache).natts {
        let column = &*(*cache).columns.add(i);
        if column.dropped {
            continue;
        }
        let name = CStr::from_ptr(column.name);
        if s.keys.iter().any(|k| k.as_c_str() == name) {
            keys.push(i);
        }
        names.push(name);
    }
    let sent: Vec<bool> = names
        .iter()
        .map(|n| !s.exclude.iter().any(|e| e.as_c_str() == *n))
        .collect();
    let listed = names
        .iter()
        .zip(&sent)
        .map(|(n, sent)| *sent && s.columns.as_ref().is_none_or(|c| c.iter().any(|c| c.as_c_str() == *n)))
        .collect();
    let position = |c: &CString| names.iter().position(|n| *n == c.as_c_str());
    Columns {
        cache,
        sent,
        listed,
        keys,
        key_values: s.keys.iter().map(position).collect(),
        tenant_value: s.tenant.iter().map(position).collect(),
    }
}

/// What one changed row becomes.
struct Change {
    key: Option<String>,
    tenant: Option<String>,
    data: *mut pg_sys::Jsonb,
    previous: *mut pg_sys::Jsonb,
}

/// The event of one row (with its old version, and whether its key
/// changed, for an UPDATE); None for an UPDATE that changed no sent column
/// (or none of `columns =>`).
unsafe fn change_of(columns: &Columns, row: RowValues, old: Option<(RowValues, bool)>) -> Option<Change> {
    let mut previous = ptr::null_mut();
    // A row whose key changed is sent whole, without `previous`.
    if let Some((old, false)) = old {
        let mut any = false;
        let changed: Vec<bool> = (0..row.values.len())
            .map(|i| {
                let changed = columns.sent[i] && !same(&old.values[i], &row.values[i]);
                any |= changed && columns.listed[i];
                changed
            })
            .collect();
        if !any {
            return None;
        }
        previous = row_object(columns.cache, &old.values, |i| changed[i]);
    }
    Some(Change {
        key: joined(&row, &columns.key_values),
        tenant: if columns.tenant_value.is_empty() {
            None
        } else {
            joined(&row, &columns.tenant_value)
        },
        data: row_object(columns.cache, &row.values, |i| columns.sent[i]),
        previous,
    })
}

/// The table's column conversions, kept across statements.
unsafe fn table_cache(rel: pg_sys::Relation) -> *mut RowCache {
    let relid = (*rel).rd_id;
    let cached = ROW_CACHES
        .with(|c| c.borrow().get(&relid).copied())
        .unwrap_or(ptr::null_mut());
    let cache = valid_cache(cached, pg_sys::TopMemoryContext, (*rel).rd_att);
    if cache != cached {
        ROW_CACHES.with(|c| c.borrow_mut().insert(relid, cache));
    }
    cache
}

/// Whether the rows in two slots have different keys (compared as bytes).
unsafe fn rekeyed(new: *mut pg_sys::TupleTableSlot, old: *mut pg_sys::TupleTableSlot, keys: &[usize]) -> bool {
    let attrs = (*(*new).tts_tupleDescriptor)
        .attrs
        .as_slice((*(*new).tts_tupleDescriptor).natts as usize);
    keys.iter().any(|&i| {
        let (null_n, null_o) = (*(*new).tts_isnull.add(i), *(*old).tts_isnull.add(i));
        null_n != null_o || (!null_n && !binary_equal(*(*new).tts_values.add(i), *(*old).tts_values.add(i), &attrs[i]))
    })
}

/// Whether every row of the UPDATE kept its key, reading the old and new
/// rows in step (and rewinding them after).
unsafe fn keys_kept(new: &mut Reader, old: &mut Reader, keys: &[usize]) -> bool {
    let deform = keys.iter().max().map_or(0, |i| i + 1);
    loop {
        match (new.next(deform), old.next(deform)) {
            (true, true) if !rekeyed(new.slot, old.slot, keys) => {}
            (false, false) => break,
            _ => return false,
        }
    }
    new.rewind();
    old.rewind();
    true
}

/// Whether two values of a column are the same bytes (PostgreSQL's
/// datum_image_eq, which pgrx does not bind).
unsafe fn binary_equal(a: pg_sys::Datum, b: pg_sys::Datum, attr: &pg_sys::FormData_pg_attribute) -> bool {
    if attr.attbyval {
        return a == b;
    }
    let bytes = |d: pg_sys::Datum| -> &[u8] {
        match attr.attlen {
            -1 => {
                let v = pg_sys::pg_detoast_datum_packed(d.cast_mut_ptr());
                std::slice::from_raw_parts(
                    pgrx::varlena::vardata_any(v).cast::<u8>(),
                    pgrx::varlena::varsize_any_exhdr(v),
                )
            }
            -2 => CStr::from_ptr(d.cast_mut_ptr()).to_bytes(),
            len => std::slice::from_raw_parts(d.cast_mut_ptr::<u8>(), len as usize),
        }
    };
    bytes(a) == bytes(b)
}

/// Rows written per INSERT of a many-row statement: enough that the
/// statement's overhead vanishes, few enough that their documents fit the
/// block the batch's memory context keeps (allocating and unmapping bigger
/// ones cost more than the INSERTs).
const BATCH_ROWS: usize = 256;
const BATCH_MEMORY: usize = 1 << 20;

/// Captures the statement's rows; false (having written nothing) if the
/// generated function must. The old and new transition tables hold an
/// UPDATE's versions of a row at the same position (the trigger manager adds
/// each row's old and new version together), so they are paired by
/// position. When some row's key changed, the generated function's pairing
/// by key decides instead, so that both paths send the same events.
unsafe fn capture_rows(trigdata: *mut pg_sys::TriggerData, op: u32, s: &Settings) -> bool {
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
    if let Some(old) = old.as_mut() {
        if rows > 1 && !keys_kept(&mut new, old, &columns.keys) {
            return false;
        }
    }
    let event = format!("{}.{kind}", s.resource);
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
        if let Some(change) = change_of(&columns, new.values(cache), old_values) {
            batch.push(change);
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
    if written > 0 {
        crate::notify_once();
    }
    true
}

fn text_datum(v: &str) -> pg_sys::Datum {
    pgrx::IntoDatum::into_datum(v).unwrap_or(pg_sys::Datum::from(0usize))
}

/// Writes (and empties) a batch, in row order so that event ids follow it,
/// with one INSERT whose plan is kept for the session: a one-row VALUES for
/// a single event, else arrays unnested in the select list (a ProjectSet
/// reads them in place; in FROM they were copied into a tuplestore, and a
/// VALUES list of many rows compiles every row's expressions as it scans).
unsafe fn write(batch: &mut Vec<Change>, event: &str, s: &Settings, operation: &str) -> u64 {
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
            &ONE_ROW_PLAN,
            c"INSERT INTO webhooks.event (event, source, operation, key, tenant, data, previous) \
              VALUES ($1, $2, $3, $4, $5, $6, $7)",
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
            &BATCH_PLAN,
            c"INSERT INTO webhooks.event (event, source, operation, key, tenant, data, previous) \
              SELECT $1, $2, $3, pg_catalog.unnest($4), pg_catalog.unnest($5), pg_catalog.unnest($6), \
                     pg_catalog.unnest($7)",
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
    let rc = pg_sys::SPI_execute_plan(plan, values.as_mut_ptr(), nulls.as_mut_ptr(), false, 0);
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
unsafe fn kept_plan(
    plan: &'static std::thread::LocalKey<RefCell<pg_sys::SPIPlanPtr>>,
    sql: &CStr,
    types: &mut [pg_sys::Oid],
) -> pg_sys::SPIPlanPtr {
    plan.with(|p| {
        let mut p = p.borrow_mut();
        if p.is_null() {
            let prepared = pg_sys::SPI_prepare_cursor(
                sql.as_ptr(),
                types.len() as i32,
                types.as_mut_ptr(),
                pg_sys::CURSOR_OPT_GENERIC_PLAN as i32,
            );
            pg_sys::SPI_keepplan(prepared);
            *p = prepared;
        }
        *p
    })
}
