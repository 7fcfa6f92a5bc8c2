//! The JSON of rows, exactly as `to_jsonb` makes it, written against
//! PostgreSQL's jsonb C API. Each column's conversion is looked up once (per
//! table for the capture engine, per call site for SQL) instead of once per
//! value: `to_jsonb` categorises every column's type (catalog lookups) on
//! every row, and prints integers only to parse them back as numeric. The
//! output is identical to `to_jsonb` (tested type by type); a column type
//! without a conversion of its own goes to `to_jsonb` itself in capture,
//! and is refused by `row_jsonb`.
//!
//! The capture engine builds its documents with `valid_cache`,
//! `json_values` and `row_object`, and compares values with `same`. The
//! same conversions are SQL functions too (0.1.0's generated capture
//! functions called them), plain C-ABI functions declared in
//! sql/02_capture.sql: a `#[pg_extern]` would convert documents to serde
//! values and back.
//! - `webhooks.row_jsonb(record)`: `to_jsonb(row)` for rows whose columns
//!   are all of the types `webhooks.row_jsonb_type(oid)` accepts.
//! - `webhooks.row_previous(old record, new jsonb)`: an UPDATE's `previous`
//!   straight from the old row, without building its whole document.
//! - `webhooks.jsonb_previous(old, new)`: the entries of `old` whose value is
//!   not the same in `new` — an UPDATE event's `previous`, in one pass.
//!   "The same" is jsonb equality of the value (jsonb `=`): numbers as numbers
//!   (1.0 = 1.00), strings byte for byte, arrays and objects structurally.

use pgrx::pg_sys;
use pgrx::prelude::*;
use pgrx::PgSqlErrorCode;
use std::ptr;

static V1: pg_sys::Pg_finfo_record = pg_sys::Pg_finfo_record { api_version: 1 };

#[no_mangle]
#[doc(hidden)]
pub extern "C" fn pg_finfo_jsonb_previous() -> &'static pg_sys::Pg_finfo_record {
    &V1
}

#[no_mangle]
#[doc(hidden)]
pub extern "C" fn pg_finfo_row_previous() -> &'static pg_sys::Pg_finfo_record {
    &V1
}

#[no_mangle]
#[doc(hidden)]
pub extern "C" fn pg_finfo_row_jsonb() -> &'static pg_sys::Pg_finfo_record {
    &V1
}

/// How a column's value becomes JSON, as `to_jsonb` does it for the type.
#[derive(Clone, Copy, PartialEq, Eq)]
#[repr(C)]
pub(crate) enum Kind {
    /// int2/int4/int8: a JSON number.
    Integer,
    /// numeric: a JSON number, or a string for NaN and ±Infinity.
    Numeric,
    /// float4/float8: printed, then a JSON number unless NaN/Infinity.
    Float,
    Bool,
    /// date/timestamp/timestamptz: ISO 8601 as `to_jsonb` prints it.
    DateTime,
    /// Everything else handled: the type's output function, as a string.
    Text,
    /// Any other type (arrays, composites, json/jsonb, domains, enums, user
    /// types), for capture: `to_jsonb` itself, called on the value as the
    /// role capture runs as. `Column::output` then holds to_jsonb.
    Generic,
}

/// The conversion for a built-in scalar type, or None for the types left
/// to `to_jsonb` (arrays, composites, json/jsonb, domains, enums, user types).
pub(crate) fn kind_of(typ: pg_sys::Oid) -> Option<Kind> {
    use pg_sys::*;
    Some(match typ {
        INT2OID | INT4OID | INT8OID => Kind::Integer,
        NUMERICOID => Kind::Numeric,
        FLOAT4OID | FLOAT8OID => Kind::Float,
        BOOLOID => Kind::Bool,
        DATEOID | TIMESTAMPOID | TIMESTAMPTZOID => Kind::DateTime,
        TEXTOID | VARCHAROID | BPCHAROID | NAMEOID | UUIDOID | TIMEOID | TIMETZOID | INTERVALOID | BYTEAOID
        | INETOID | CIDROID | MACADDROID | CHAROID => Kind::Text,
        _ => return None,
    })
}

/// `webhooks.row_jsonb_type(oid)`: can row_jsonb serialise columns of this
/// type (a `regtype` works too: `row_jsonb_type('int8'::regtype)`)?
#[pg_extern(immutable, strict, parallel_safe)]
fn row_jsonb_type(typ: pg_sys::Oid) -> bool {
    kind_of(typ).is_some()
}

/// Per call site (statement): each column's type and conversion.
#[repr(C)]
pub(crate) struct Column {
    kind: Kind,
    pub(crate) dropped: bool,
    typ: pg_sys::Oid,
    /// The column's name, copied into the call site's memory (the object's
    /// keys point at it until the document is made).
    pub(crate) name: *mut std::ffi::c_char,
    name_len: usize,
    output: pg_sys::FmgrInfo,
}

#[repr(C)]
pub(crate) struct RowCache {
    pub(crate) natts: usize,
    pub(crate) columns: *mut Column,
    /// The columns that are not dropped (values come in their order)...
    live: usize,
    /// ...their names as JSON keys...
    keys: *mut pg_sys::JsonbValue,
    /// ...and their indexes in jsonb's key order (shorter first, then
    /// bytewise), so that documents are built already sorted.
    order: *mut usize,
}

impl RowCache {
    /// The key of live column `i`.
    pub(crate) unsafe fn key(&self, i: usize) -> pg_sys::JsonbValue {
        *self.keys.add(i)
    }
}

/// `row_jsonb(record) RETURNS jsonb`, STRICT: `to_jsonb(row)` for rows of
/// the types `kind_of` knows; raises 0A000 for any other column type.
///
/// # Safety
/// Called by the function manager with one non-NULL composite argument.
#[no_mangle]
#[pg_guard]
pub unsafe extern "C-unwind" fn row_jsonb(fcinfo: pg_sys::FunctionCallInfo) -> pg_sys::Datum {
    let (cache, values) = composite_values(fcinfo, 0);
    pg_sys::Datum::from(row_object(cache, &values, |_| true))
}

/// `row_previous(old record, new jsonb) RETURNS jsonb`, STRICT: the
/// `previous` of an UPDATE without building the old row's document: each
/// old column is made into JSON, compared with the same key of `new`, and
/// kept if it differs. Keys `new` lacks (excluded columns) are left out.
/// NULL when nothing changed.
///
/// # Safety
/// Called by the function manager with a composite and a jsonb argument.
#[no_mangle]
#[pg_guard]
pub unsafe extern "C-unwind" fn row_previous(fcinfo: pg_sys::FunctionCallInfo) -> pg_sys::Datum {
    let new = jsonb_arg(fcinfo, 1);
    let new_root = ptr::addr_of_mut!((*new).root);
    if !is_object(new_root) {
        ereport!(
            ERROR,
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            "webhooks.row_previous: the new row must be a JSON object"
        );
    }
    let (cache, values) = composite_values(fcinfo, 0);
    let mut other: pg_sys::JsonbValue = std::mem::zeroed();
    let changed: Vec<bool> = values
        .iter()
        .enumerate()
        .map(|(i, value)| {
            let key = (*cache).key(i);
            let found =
                pg_sys::getKeyJsonValueFromContainer(new_root, key.val.string.val, key.val.string.len, &mut other);
            // A column the new document lacks is one the table does not send.
            !found.is_null() && !same(value, &*found)
        })
        .collect();
    if !changed.contains(&true) {
        (*fcinfo).isnull = true;
        return pg_sys::Datum::from(0usize);
    }
    pg_sys::Datum::from(row_object(cache, &values, |i| changed[i]))
}

/// A JSON object being built, begun on its first key: `jsonb_previous`'s,
/// whose values can be nested containers (jbvBinary), which only
/// pushJsonbValue unpacks. Rows' documents are built by `row_object`.
struct Object {
    state: *mut pg_sys::JsonbParseState,
    begun: bool,
}

impl Object {
    fn new() -> Self {
        Object {
            state: ptr::null_mut(),
            begun: false,
        }
    }

    unsafe fn push(&mut self, key: &mut pg_sys::JsonbValue, value: &mut pg_sys::JsonbValue) {
        if !self.begun {
            pg_sys::pushJsonbValue(
                &mut self.state,
                pg_sys::JsonbIteratorToken::WJB_BEGIN_OBJECT,
                ptr::null_mut(),
            );
            self.begun = true;
        }
        pg_sys::pushJsonbValue(&mut self.state, pg_sys::JsonbIteratorToken::WJB_KEY, key);
        pg_sys::pushJsonbValue(&mut self.state, pg_sys::JsonbIteratorToken::WJB_VALUE, value);
    }

    /// The object, or SQL NULL if nothing was pushed.
    unsafe fn finish_or_null(self, fcinfo: pg_sys::FunctionCallInfo) -> pg_sys::Datum {
        if !self.begun {
            (*fcinfo).isnull = true;
            return pg_sys::Datum::from(0usize);
        }
        pg_sys::Datum::from(self.finish())
    }

    /// The object (`{}` if nothing was pushed).
    unsafe fn finish(mut self) -> *mut pg_sys::Jsonb {
        if !self.begun {
            pg_sys::pushJsonbValue(
                &mut self.state,
                pg_sys::JsonbIteratorToken::WJB_BEGIN_OBJECT,
                ptr::null_mut(),
            );
        }
        let object = pg_sys::pushJsonbValue(
            &mut self.state,
            pg_sys::JsonbIteratorToken::WJB_END_OBJECT,
            ptr::null_mut(),
        );
        pg_sys::JsonbValueToJsonb(object)
    }
}

/// The values of the composite argument `n`'s columns, as `to_jsonb`
/// would make them (see `json_values`), with the call site's cache.
unsafe fn composite_values(fcinfo: pg_sys::FunctionCallInfo, n: usize) -> (*mut RowCache, Vec<pg_sys::JsonbValue>) {
    let datum = pgrx::fcinfo::pg_getarg_datum_raw(fcinfo, n);
    let header =
        pg_sys::pg_detoast_datum(datum.cast_mut_ptr::<pg_sys::varlena>()).cast::<pg_sys::HeapTupleHeaderData>();
    let fields = (*header).t_choice.t_datum;
    let tupdesc = pg_sys::lookup_rowtype_tupdesc(fields.datum_typeid, fields.datum_typmod);
    let cache = row_cache(fcinfo, tupdesc);
    let natts = (*cache).natts;
    let values = pg_sys::palloc(natts.max(1) * std::mem::size_of::<pg_sys::Datum>()).cast::<pg_sys::Datum>();
    let nulls = pg_sys::palloc(natts.max(1)).cast::<bool>();
    let mut tuple = pg_sys::HeapTupleData {
        t_len: pgrx::varlena::varsize_any(header.cast()) as u32,
        t_self: std::mem::zeroed(),
        t_tableOid: pg_sys::InvalidOid,
        t_data: header,
    };
    pg_sys::heap_deform_tuple(&mut tuple, tupdesc, values, nulls);
    let json = json_values(cache, tupdesc, values, nulls);
    release(tupdesc);
    (cache, json)
}

/// Column `i`'s attribute (TupleDescAttr).
pub(crate) unsafe fn attr<'a>(tupdesc: pg_sys::TupleDesc, i: usize) -> &'a pg_sys::FormData_pg_attribute {
    &attrs(tupdesc)[i]
}

/// Every column's attribute, dropped ones included. PostgreSQL 18 moved the
/// array behind `compact_attrs`; pgrx's `PgTupleDesc::get` knows where it is
/// on each version, and the attributes are contiguous on all of them.
pub(crate) unsafe fn attrs<'a>(tupdesc: pg_sys::TupleDesc) -> &'a [pg_sys::FormData_pg_attribute] {
    // Borrows: neither released nor freed when `desc` goes.
    let desc = pgrx::PgTupleDesc::from_pg_unchecked(tupdesc);
    match desc.get(0) {
        Some(first) => std::slice::from_raw_parts(first as *const pg_sys::FormData_pg_attribute, desc.len()),
        None => &[],
    }
}

/// Each column (dropped ones skipped) of a deformed row as `to_jsonb` would
/// make it, in column order: the values `row_object` takes.
pub(crate) unsafe fn json_values(
    cache: *mut RowCache,
    tupdesc: pg_sys::TupleDesc,
    values: *const pg_sys::Datum,
    nulls: *const bool,
) -> Vec<pg_sys::JsonbValue> {
    let mut json = Vec::with_capacity((*cache).live);
    let attrs = &attrs(tupdesc)[..(*cache).natts];
    for (i, attr) in attrs.iter().enumerate() {
        let column = &mut *(*cache).columns.add(i);
        if column.dropped {
            continue;
        }
        json.push(if *nulls.add(i) {
            let mut v: pg_sys::JsonbValue = std::mem::zeroed();
            v.type_ = pg_sys::jbvType::jbvNull;
            v
        } else {
            column_value(column, *values.add(i), attr.atttypid)
        });
    }
    json
}

/// The JSON object of the row's columns that `keep` picks (by index into
/// `values`, which `json_values` made with this cache). Built straight from
/// the values in the cache's key order: pushJsonbValue would copy every
/// pair and sort the keys again for every row.
pub(crate) unsafe fn row_object(
    cache: *mut RowCache,
    values: &[pg_sys::JsonbValue],
    keep: impl Fn(usize) -> bool,
) -> *mut pg_sys::Jsonb {
    let order = std::slice::from_raw_parts((*cache).order, (*cache).live);
    if order
        .iter()
        .any(|&i| keep(i) && values[i].type_ == pg_sys::jbvType::jbvBinary)
    {
        // A nested container (a Generic column): only pushJsonbValue unpacks it.
        let mut object = Object::new();
        for &i in order {
            if keep(i) {
                let (mut key, mut value) = ((*cache).key(i), values[i]);
                object.push(&mut key, &mut value);
            }
        }
        return object.finish();
    }
    let mut pairs: Vec<pg_sys::JsonbPair> = Vec::with_capacity(order.len());
    for &i in order {
        if keep(i) {
            pairs.push(pg_sys::JsonbPair {
                key: (*cache).key(i),
                value: values[i],
                order: pairs.len() as u32,
            });
        }
    }
    let mut object: pg_sys::JsonbValue = std::mem::zeroed();
    object.type_ = pg_sys::jbvType::jbvObject;
    object.val.object.nPairs = pairs.len() as i32;
    object.val.object.pairs = pairs.as_mut_ptr();
    pg_sys::JsonbValueToJsonb(&mut object)
}

/// The call site's cache for this row type, built on first use and again
/// whenever the row's columns (names, types, dropped ones) differ from what
/// it was built for: a call site can outlive an ALTER TABLE (a PL/pgSQL
/// expression in a transaction).
pub(crate) unsafe fn row_cache(fcinfo: pg_sys::FunctionCallInfo, tupdesc: pg_sys::TupleDesc) -> *mut RowCache {
    let flinfo = (*fcinfo).flinfo;
    let cache = valid_cache((*flinfo).fn_extra.cast(), (*flinfo).fn_mcxt, tupdesc, false);
    (*flinfo).fn_extra = cache.cast();
    cache
}

/// `cached` if it was built for these columns, else a new cache in `mcxt`.
pub(crate) unsafe fn valid_cache(
    cached: *mut RowCache,
    mcxt: pg_sys::MemoryContext,
    tupdesc: pg_sys::TupleDesc,
    generic: bool,
) -> *mut RowCache {
    let natts = (*tupdesc).natts as usize;
    let attrs = attrs(tupdesc);
    if !cached.is_null()
        && (*cached).natts == natts
        && attrs.iter().enumerate().all(|(i, attr)| {
            let column = &*(*cached).columns.add(i);
            column.dropped == attr.attisdropped
                && (attr.attisdropped
                    || (column.typ == attr.atttypid
                        && std::ffi::CStr::from_ptr(column.name)
                            == std::ffi::CStr::from_ptr(attr.attname.data.as_ptr())))
        })
    {
        return cached;
    }
    let columns = pg_sys::MemoryContextAllocZero(mcxt, natts.max(1) * std::mem::size_of::<Column>()).cast::<Column>();
    for (i, attr) in attrs.iter().enumerate() {
        let column = &mut *columns.add(i);
        column.dropped = attr.attisdropped;
        if attr.attisdropped {
            continue;
        }
        let kind = match kind_of(attr.atttypid) {
            Some(kind) => kind,
            None if generic => Kind::Generic,
            None => {
                release(tupdesc);
                ereport!(
                    ERROR,
                    PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
                    "webhooks.row_jsonb: column type not handled; use to_jsonb"
                );
            }
        };
        column.kind = kind;
        column.typ = attr.atttypid;
        let name = attr.attname.data.as_ptr();
        column.name = pg_sys::MemoryContextStrdup(mcxt, name);
        column.name_len = libc_strlen(name);
        if kind == Kind::Generic {
            to_jsonb_of(&mut column.output, attr, mcxt);
            continue;
        }
        let mut output = pg_sys::InvalidOid;
        let mut varlena = false;
        pg_sys::getTypeOutputInfo(attr.atttypid, &mut output, &mut varlena);
        pg_sys::fmgr_info_cxt(output, &mut column.output, mcxt);
    }
    let live: Vec<&Column> = (0..natts).map(|i| &*columns.add(i)).filter(|c| !c.dropped).collect();
    let keys = pg_sys::MemoryContextAlloc(mcxt, live.len().max(1) * std::mem::size_of::<pg_sys::JsonbValue>())
        .cast::<pg_sys::JsonbValue>();
    for (i, column) in live.iter().enumerate() {
        keys.add(i).write(string_value(column.name, column.name_len));
    }
    let mut sorted: Vec<usize> = (0..live.len()).collect();
    sorted.sort_by(|&a, &b| {
        let (a, b) = (live[a], live[b]);
        let bytes = |c: &Column| std::slice::from_raw_parts(c.name.cast::<u8>(), c.name_len);
        a.name_len.cmp(&b.name_len).then(bytes(a).cmp(bytes(b)))
    });
    let order = pg_sys::MemoryContextAlloc(mcxt, live.len().max(1) * std::mem::size_of::<usize>()).cast::<usize>();
    std::ptr::copy_nonoverlapping(sorted.as_ptr(), order, sorted.len());
    let cache = pg_sys::MemoryContextAlloc(mcxt, std::mem::size_of::<RowCache>()).cast::<RowCache>();
    cache.write(RowCache {
        natts,
        columns,
        live: live.len(),
        keys,
        order,
    });
    cache
}

/// One non-NULL column value as `to_jsonb` would make it.
pub(crate) unsafe fn column_value(column: &mut Column, value: pg_sys::Datum, typ: pg_sys::Oid) -> pg_sys::JsonbValue {
    let mut v: pg_sys::JsonbValue = std::mem::zeroed();
    match column.kind {
        Kind::Integer => {
            let n = match typ {
                pg_sys::INT2OID => i64::from(value.value() as i16),
                pg_sys::INT4OID => i64::from(value.value() as i32),
                _ => value.value() as i64,
            };
            v.type_ = pg_sys::jbvType::jbvNumeric;
            v.val.numeric = pg_sys::int64_to_numeric(n);
        }
        Kind::Numeric => {
            let n = pg_sys::pg_detoast_datum(value.cast_mut_ptr()).cast::<pg_sys::NumericData>();
            if pg_sys::numeric_is_nan(n) || pg_sys::numeric_is_inf(n) {
                return printed(column, value);
            }
            v.type_ = pg_sys::jbvType::jbvNumeric;
            v.val.numeric = n;
        }
        Kind::Float => {
            let text = pg_sys::OutputFunctionCall(&mut column.output, value);
            let bytes = std::ffi::CStr::from_ptr(text).to_bytes();
            if bytes.iter().any(|b| *b == b'N' || *b == b'n') {
                return string_value(text, bytes.len());
            }
            v.type_ = pg_sys::jbvType::jbvNumeric;
            v.val.numeric = pgrx::direct_function_call::<pg_sys::Datum>(
                pg_sys::numeric_in,
                &[
                    Some(pg_sys::Datum::from(text)),
                    Some(pg_sys::Datum::from(pg_sys::InvalidOid)),
                    Some(pg_sys::Datum::from(-1i32)),
                ],
            )
            .map(|d| d.cast_mut_ptr())
            .unwrap_or(ptr::null_mut());
        }
        Kind::Bool => {
            v.type_ = pg_sys::jbvType::jbvBool;
            v.val.boolean = value.value() != 0;
        }
        Kind::DateTime => {
            let text = pg_sys::JsonEncodeDateTime(ptr::null_mut(), value, typ, ptr::null());
            return string_value(text, libc_strlen(text));
        }
        Kind::Text => return printed(column, value),
        Kind::Generic => {
            let jsonb = pg_sys::FunctionCall1Coll(&mut column.output, pg_sys::InvalidOid, value)
                .cast_mut_ptr::<pg_sys::Jsonb>();
            let jsonb = pg_sys::pg_detoast_datum(jsonb.cast()).cast::<pg_sys::Jsonb>();
            let root = ptr::addr_of_mut!((*jsonb).root);
            // A scalar comes back as one (a key or tenant is read from it);
            // a container as jbvBinary, which row_object unpacks.
            if !pg_sys::JsonbExtractScalar(root, &mut v) {
                v.type_ = pg_sys::jbvType::jbvBinary;
                v.val.binary.data = root;
                v.val.binary.len = pgrx::varlena::varsize_any(jsonb.cast()) as i32;
            }
        }
    }
    v
}

/// `to_jsonb` for values of the column's type: its argument's type is read
/// from the call's expression (`to_jsonb(anyelement)`), so one is made.
unsafe fn to_jsonb_of(
    flinfo: *mut pg_sys::FmgrInfo,
    attr: &pg_sys::FormData_pg_attribute,
    mcxt: pg_sys::MemoryContext,
) {
    let outer = pg_sys::MemoryContextSwitchTo(mcxt);
    let function = pg_sys::Oid::from(pg_sys::F_TO_JSONB);
    pg_sys::fmgr_info_cxt(function, flinfo, mcxt);
    let arg = pg_sys::makeNullConst(attr.atttypid, attr.atttypmod, attr.attcollation);
    let args = pg_sys::lappend(ptr::null_mut(), arg.cast());
    let call = pg_sys::makeFuncExpr(
        function,
        pg_sys::JSONBOID,
        args,
        pg_sys::InvalidOid,
        pg_sys::InvalidOid,
        pg_sys::CoercionForm::COERCE_EXPLICIT_CALL,
    );
    (*flinfo).fn_expr = call.cast();
    pg_sys::MemoryContextSwitchTo(outer);
}

/// The value as its type's output function prints it, as a JSON string.
unsafe fn printed(column: &mut Column, value: pg_sys::Datum) -> pg_sys::JsonbValue {
    let text = pg_sys::OutputFunctionCall(&mut column.output, value);
    string_value(text, libc_strlen(text))
}

unsafe fn string_value(text: *mut std::ffi::c_char, len: usize) -> pg_sys::JsonbValue {
    // jsonb's limit for one string (JENTRY_OFFLENMASK), as to_jsonb checks it.
    if len > 0x0FFF_FFFF {
        ereport!(
            ERROR,
            PgSqlErrorCode::ERRCODE_PROGRAM_LIMIT_EXCEEDED,
            "string too long to represent as jsonb string"
        );
    }
    let mut v: pg_sys::JsonbValue = std::mem::zeroed();
    v.type_ = pg_sys::jbvType::jbvString;
    v.val.string.val = text;
    v.val.string.len = len as i32;
    v
}

/// ReleaseTupleDesc: only reference-counted descriptors are counted.
unsafe fn release(tupdesc: pg_sys::TupleDesc) {
    if (*tupdesc).tdrefcount >= 0 {
        pg_sys::DecrTupleDescRefCount(tupdesc);
    }
}

unsafe fn libc_strlen(text: *const std::ffi::c_char) -> usize {
    std::ffi::CStr::from_ptr(text).to_bytes().len()
}

/// `jsonb_previous(old jsonb, new jsonb) RETURNS jsonb`, STRICT: the
/// key/value pairs of `old` whose key is missing from `new` or whose value
/// differs; NULL when there are none (a no-op change). Both must be objects.
///
/// # Safety
/// Called by the function manager with two non-NULL jsonb arguments.
#[no_mangle]
#[pg_guard]
pub unsafe extern "C-unwind" fn jsonb_previous(fcinfo: pg_sys::FunctionCallInfo) -> pg_sys::Datum {
    let old = jsonb_arg(fcinfo, 0);
    let new = jsonb_arg(fcinfo, 1);
    let old_root = ptr::addr_of_mut!((*old).root);
    let new_root = ptr::addr_of_mut!((*new).root);
    if !is_object(old_root) || !is_object(new_root) {
        ereport!(
            ERROR,
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            "webhooks.jsonb_previous: both arguments must be JSON objects"
        );
    }

    let mut object = Object::new();
    let mut it = pg_sys::JsonbIteratorInit(old_root);
    let mut key: pg_sys::JsonbValue = std::mem::zeroed();
    let mut value: pg_sys::JsonbValue = std::mem::zeroed();
    let mut other: pg_sys::JsonbValue = std::mem::zeroed();
    loop {
        // skipNested: nested arrays/objects come back whole, as jbvBinary.
        match pg_sys::JsonbIteratorNext(&mut it, &mut key, true) {
            pg_sys::JsonbIteratorToken::WJB_KEY => {}
            pg_sys::JsonbIteratorToken::WJB_DONE => break,
            _ => continue, // the object's begin and end
        }
        pg_sys::JsonbIteratorNext(&mut it, &mut value, true);
        let found = pg_sys::getKeyJsonValueFromContainer(new_root, key.val.string.val, key.val.string.len, &mut other);
        if found.is_null() || !same(&value, &*found) {
            object.push(&mut key, &mut value);
        }
    }
    object.finish_or_null(fcinfo)
}

/// Argument `n` as a detoasted jsonb (PG_GETARG_JSONB_P).
unsafe fn jsonb_arg(fcinfo: pg_sys::FunctionCallInfo, n: usize) -> *mut pg_sys::Jsonb {
    let datum = pgrx::fcinfo::pg_getarg_datum_raw(fcinfo, n);
    pg_sys::pg_detoast_datum(datum.cast_mut_ptr::<pg_sys::varlena>()).cast::<pg_sys::Jsonb>()
}

unsafe fn is_object(root: *mut pg_sys::JsonbContainer) -> bool {
    (*root).header & pg_sys::JB_FOBJECT != 0
}

/// jsonb equality of two values as the iterator and the key lookup return
/// them: scalars, or nested containers as jbvBinary.
pub(crate) unsafe fn same(a: &pg_sys::JsonbValue, b: &pg_sys::JsonbValue) -> bool {
    use pg_sys::jbvType::{
        jbvBinary as BINARY, jbvBool as BOOL, jbvNull as NULL, jbvNumeric as NUMERIC, jbvString as STRING,
    };
    if a.type_ != b.type_ {
        return false;
    }
    match a.type_ {
        NULL => true,
        BOOL => a.val.boolean == b.val.boolean,
        STRING => {
            let (x, y) = (a.val.string, b.val.string);
            x.len == y.len
                && (x.len <= 0
                    || std::slice::from_raw_parts(x.val.cast::<u8>(), x.len as usize)
                        == std::slice::from_raw_parts(y.val.cast::<u8>(), y.len as usize))
        }
        NUMERIC => pgrx::direct_function_call::<bool>(
            pg_sys::numeric_eq,
            &[
                Some(pg_sys::Datum::from(a.val.numeric)),
                Some(pg_sys::Datum::from(b.val.numeric)),
            ],
        )
        .unwrap_or(false),
        BINARY => pg_sys::compareJsonbContainers(a.val.binary.data, b.val.binary.data) == 0,
        // Not produced by stored jsonb; treat as changed rather than guess.
        _ => false,
    }
}
