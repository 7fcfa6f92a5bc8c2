//! From a table's rows to the changes capture writes: reading a statement's
//! transition tables (`Reader`), each row's columns as JSON values (with the
//! table's column conversions, kept across statements), and the rules that
//! make one row's change (`change_of`): its key and tenant text, the sent
//! and listed columns, `previous`, and whether an UPDATE is an event at all.
//!
//! The per-table column work (`Columns`) is done once, not per row, and
//! kept with the table's settings while its columns stay the same: these
//! run for every row a tracked table's statements write.

use super::settings::Settings;
use crate::row_json::{json_values, row_object, same, valid_cache, RowCache};
use pgrx::pg_sys;
use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::{CStr, CString};
use std::ptr;
use std::rc::Rc;

thread_local! {
    // Per table: each column's conversion, kept across statements (checked
    // against the table's columns on every use).
    static ROW_CACHES: RefCell<HashMap<pg_sys::Oid, *mut RowCache>> = RefCell::new(HashMap::new());
}

/// One row's columns as JSON values, in column order (dropped ones absent).
/// Values may point into the row its reader last returned.
pub(super) struct RowValues {
    pub(super) values: Vec<pg_sys::JsonbValue>,
}

/// Reads a transition table from its start with a read pointer of its own:
/// other triggers of the statement read the same table.
pub(super) struct Reader {
    store: *mut pg_sys::Tuplestorestate,
    pointer: i32,
    pub(super) slot: *mut pg_sys::TupleTableSlot,
    /// Where rows are read: a spilled tuplestore allocates the row it
    /// returns in the current context, and the slot frees it on the next
    /// read, so that context must outlive the reading.
    mcxt: pg_sys::MemoryContext,
}

impl Reader {
    pub(super) unsafe fn new(store: *mut pg_sys::Tuplestorestate, tupdesc: pg_sys::TupleDesc) -> Self {
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
    pub(super) unsafe fn next(&mut self, natts: usize) -> bool {
        let outer = pg_sys::MemoryContextSwitchTo(self.mcxt);
        pg_sys::tuplestore_select_read_pointer(self.store, self.pointer);
        let found = pg_sys::tuplestore_gettupleslot(self.store, true, false, self.slot);
        if found {
            pg_sys::slot_getsomeattrs_int(self.slot, natts as i32);
        }
        pg_sys::MemoryContextSwitchTo(outer);
        found
    }

    pub(super) unsafe fn values(&self, cache: *mut RowCache) -> RowValues {
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
pub(super) struct Columns {
    /// The column conversions these were worked out with (a new cache means
    /// the table's columns changed).
    cache: *mut RowCache,
    /// Not excluded.
    sent: Vec<bool>,
    /// Sent and, with `columns =>`, listed: a change to one makes an UPDATE
    /// an event.
    listed: Vec<bool>,
    /// The key columns' attribute indexes.
    pub(super) keys: Vec<usize>,
    /// The key columns and the tenant column (None if missing).
    key_values: Vec<Option<usize>>,
    tenant_value: Vec<Option<usize>>,
}

/// The statement's Columns: kept with the settings while the table's
/// columns are those they were worked out for.
pub(super) unsafe fn columns_for(cache: *mut RowCache, s: &Settings) -> Rc<Columns> {
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
        // A deferred table stages a change of any sent column: the row's
        // final state decides at commit.
        .map(|(n, sent)| {
            *sent && (s.deferred || s.columns.as_ref().is_none_or(|c| c.iter().any(|c| c.as_c_str() == *n)))
        })
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
pub(super) struct Change {
    pub(super) key: Option<String>,
    pub(super) tenant: Option<String>,
    pub(super) data: *mut pg_sys::Jsonb,
    pub(super) previous: *mut pg_sys::Jsonb,
}

/// The event of one row (with its old version, and whether its key
/// changed, for an UPDATE); None for an UPDATE that changed no sent column
/// (or none of `columns =>`), unless `always`.
pub(super) unsafe fn change_of(
    columns: &Columns,
    row: RowValues,
    old: Option<(RowValues, bool)>,
    always: bool,
) -> Option<Change> {
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
        if !any && !always {
            return None;
        }
        if changed.contains(&true) {
            previous = row_object(columns.cache, &old.values, |i| changed[i]);
        }
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
pub(super) unsafe fn table_cache(rel: pg_sys::Relation) -> *mut RowCache {
    let relid = (*rel).rd_id;
    let cached = ROW_CACHES
        .with(|c| c.borrow().get(&relid).copied())
        .unwrap_or(ptr::null_mut());
    let cache = valid_cache(cached, pg_sys::TopMemoryContext, (*rel).rd_att, true);
    if cache != cached {
        ROW_CACHES.with(|c| c.borrow_mut().insert(relid, cache));
    }
    cache
}

/// Whether the rows in two slots have different keys (compared as bytes).
pub(super) unsafe fn rekeyed(
    new: *mut pg_sys::TupleTableSlot,
    old: *mut pg_sys::TupleTableSlot,
    keys: &[usize],
) -> bool {
    keys_differ(
        (*new).tts_tupleDescriptor,
        keys,
        ((*new).tts_values, (*new).tts_isnull),
        ((*old).tts_values, (*old).tts_isnull),
    )
}

/// Whether two deformed versions of a row differ in a key column (compared
/// as bytes).
pub(super) unsafe fn keys_differ(
    tupdesc: pg_sys::TupleDesc,
    keys: &[usize],
    (new_values, new_nulls): (*const pg_sys::Datum, *const bool),
    (old_values, old_nulls): (*const pg_sys::Datum, *const bool),
) -> bool {
    keys.iter().any(|&i| {
        let (null_n, null_o) = (*new_nulls.add(i), *old_nulls.add(i));
        null_n != null_o
            || (!null_n
                && !binary_equal(
                    *new_values.add(i),
                    *old_values.add(i),
                    crate::row_json::attr(tupdesc, i),
                ))
    })
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
