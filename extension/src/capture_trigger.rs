//! The capture engine: `webhooks.capture()`, the statement-level trigger of
//! tracked tables, and `webhooks.capture_event()`, the row-level trigger of
//! business events. Every rule that turns a row change into an event (key
//! text, `previous`, sent and listed columns, tenant, event name, payload
//! function, staging for deferred tables) is here and nowhere else.
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
//! into JSON with row_json's conversions, and written by prepared
//! INSERTs (one row's with `VALUES`, more rows' 256 at a time from arrays).
//! The old and new transition tables hold an UPDATE's versions of a row at
//! the same position, so they are paired by position; a row whose key
//! changed is sent without `previous`.
//!
//! Settings are kept per backend and dropped when the table's relcache
//! entry is invalidated: webhooks.source_changed() invalidates it on every
//! change of the settings, and Postgres on every ALTER TABLE.

use crate::row_json::{json_values, row_object, same, valid_cache, RowCache};
use pgrx::pg_sys;
use pgrx::prelude::*;
use pgrx::PgSqlErrorCode;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::ffi::{CStr, CString};
use std::ptr;
use std::rc::Rc;

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
finfo!(pg_finfo_capture);
finfo!(pg_finfo_capture_event);
finfo!(pg_finfo_invalidate_capture);
finfo!(pg_finfo_apply_payload);
finfo!(pg_finfo_checked_event_size);

/// What a tracked table (or one business event of it) sends.
struct Settings {
    /// The tracked table (a partition's settings are its root's).
    relid: pg_sys::Oid,
    /// The event name: `<resource>.` plus created/updated/deleted, or a
    /// business event's whole name.
    event: EventName,
    source: CString,
    keys: Vec<CString>,
    tenant: Option<CString>,
    exclude: Vec<CString>,
    columns: Option<Vec<CString>>,
    payload: Option<pg_sys::Oid>,
    /// Changes are staged in webhooks.staged_change for capture_commit().
    deferred: bool,
    /// Worked out from these settings and the table's columns on first use.
    table_columns: RefCell<Option<Rc<Columns>>>,
}

enum EventName {
    Resource(String),
    Business(String),
}

thread_local! {
    // Per table (capture) and per trigger (business events, with its table).
    static SETTINGS: RefCell<HashMap<pg_sys::Oid, Rc<Settings>>> = RefCell::new(HashMap::new());
    static EVENT_SETTINGS: RefCell<HashMap<pg_sys::Oid, Rc<Settings>>> = RefCell::new(HashMap::new());
    // Per table: each column's conversion, kept across statements (checked
    // against the table's columns on every use).
    static ROW_CACHES: RefCell<HashMap<pg_sys::Oid, *mut RowCache>> = RefCell::new(HashMap::new());
    // INSERT plans: [events, staged changes] x [one row, a batch].
    static PLANS: RefCell<[pg_sys::SPIPlanPtr; 4]> = const { RefCell::new([ptr::null_mut(); 4]) };
    static EXTENSION_OWNER: Cell<pg_sys::Oid> = const { Cell::new(pg_sys::InvalidOid) };
    // Deferred tables this transaction staged changes of: flushed before
    // commit if capture_commit() did not (SET CONSTRAINTS ... IMMEDIATE makes
    // it fire before the statement trigger that stages).
    static STAGED: RefCell<Vec<pg_sys::Oid>> = const { RefCell::new(Vec::new()) };
}

/// Relcache invalidation callback: forget the settings of the table (of all
/// tables for InvalidOid).
#[pg_guard]
unsafe extern "C-unwind" fn forget_settings(_arg: pg_sys::Datum, relid: pg_sys::Oid) {
    let all = relid == pg_sys::InvalidOid;
    SETTINGS.with(|m| {
        if let Ok(mut m) = m.try_borrow_mut() {
            // (A partition's entry holds its root's settings.)
            m.retain(|table, s| !all && *table != relid && s.relid != relid);
        }
    });
    EVENT_SETTINGS.with(|m| {
        if let Ok(mut m) = m.try_borrow_mut() {
            m.retain(|_, s| !all && s.relid != relid);
        }
    });
}

/// Registers the invalidation and transaction callbacks (from `_PG_init`,
/// once per backend).
pub fn register_callbacks() {
    unsafe {
        pg_sys::CacheRegisterRelcacheCallback(Some(forget_settings), pg_sys::Datum::from(0usize));
        pg_sys::RegisterXactCallback(Some(at_transaction_end), ptr::null_mut());
    }
}

/// Before commit (or PREPARE), changes of deferred tables still staged
/// become events: nothing a transaction wrote may go unseen.
#[pg_guard]
unsafe extern "C-unwind" fn at_transaction_end(event: pg_sys::XactEvent::Type, _arg: *mut std::ffi::c_void) {
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

/// `webhooks.invalidate_capture(regclass)`: every backend reads the table's
/// settings again after this transaction commits (this one at once).
///
/// # Safety
/// Called by the function manager with one non-NULL argument.
#[no_mangle]
#[pg_guard]
pub unsafe extern "C-unwind" fn invalidate_capture(fcinfo: pg_sys::FunctionCallInfo) -> pg_sys::Datum {
    let relid = pg_sys::Oid::from(pgrx::fcinfo::pg_getarg_datum_raw(fcinfo, 0).value() as u32);
    // (A table being dropped has no pg_class row left to invalidate.)
    if pg_sys::SearchSysCacheExists(
        pg_sys::SysCacheIdentifier::RELOID as i32,
        pg_sys::Datum::from(relid),
        pg_sys::Datum::from(0usize),
        pg_sys::Datum::from(0usize),
        pg_sys::Datum::from(0usize),
    ) {
        pg_sys::CacheInvalidateRelcacheByRelid(relid);
    }
    (*fcinfo).isnull = true;
    pg_sys::Datum::from(0usize)
}

/// Runs `f` as the extension's owner, in a security-restricted operation.
/// No restore is needed on error: the (sub)transaction's abort restores the
/// user, as it does for SECURITY DEFINER functions.
unsafe fn as_owner<T>(f: impl FnOnce() -> T) -> T {
    as_role(extension_owner(), f)
}

unsafe fn as_role<T>(role: pg_sys::Oid, f: impl FnOnce() -> T) -> T {
    let (mut user, mut context) = (pg_sys::InvalidOid, 0);
    pg_sys::GetUserIdAndSecContext(&mut user, &mut context);
    pg_sys::SetUserIdAndSecContext(
        role,
        context | (pg_sys::SECURITY_LOCAL_USERID_CHANGE | pg_sys::SECURITY_RESTRICTED_OPERATION) as i32,
    );
    let result = f();
    pg_sys::SetUserIdAndSecContext(user, context);
    result
}

/// Runs `f` with search_path = pg_catalog, pg_temp (for code that is not
/// ours, or SQL of ours that names things without their schema).
unsafe fn with_fixed_search_path<T>(f: impl FnOnce() -> T) -> T {
    let level = pg_sys::NewGUCNestLevel();
    pg_sys::set_config_option(
        c"search_path".as_ptr(),
        c"pg_catalog, pg_temp".as_ptr(),
        pg_sys::GucContext::PGC_USERSET,
        pg_sys::GucSource::PGC_S_SESSION,
        pg_sys::GucAction::GUC_ACTION_SAVE,
        true,
        0,
        false,
    );
    let result = f();
    pg_sys::AtEOXact_GUC(true, level);
    result
}

/// The owner of the extension (who writes events), looked up once.
unsafe fn extension_owner() -> pg_sys::Oid {
    let known = EXTENSION_OWNER.with(|o| o.get());
    if known != pg_sys::InvalidOid {
        return known;
    }
    let owner = Spi::get_one::<pg_sys::Oid>(
        "SELECT x.extowner FROM pg_catalog.pg_extension x \
          WHERE x.extname OPERATOR(pg_catalog.=) 'pg_webhooks'::pg_catalog.name",
    )
    .ok()
    .flatten()
    .unwrap_or(pg_sys::InvalidOid);
    if owner == pg_sys::InvalidOid {
        ereport!(
            ERROR,
            PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            "webhooks.capture: extension pg_webhooks is not installed in this database"
        );
    }
    EXTENSION_OWNER.with(|o| o.set(owner));
    owner
}

/// May this session run with `webhooks.capture = off`? Only superusers and
/// members of webhooks_admin: an application role must not write unseen.
/// The session's user decides, not the current one (a SECURITY DEFINER
/// function of the extension's runs as a superuser).
unsafe fn may_skip_capture() -> bool {
    let user = pg_sys::GetSessionUserId();
    if pg_sys::superuser_arg(user) {
        return true;
    }
    let admin = pg_sys::get_role_oid(c"webhooks_admin".as_ptr(), true);
    admin != pg_sys::InvalidOid && pg_sys::has_privs_of_role(user, admin)
}

/// Whether to capture: `webhooks.capture` is on, or off for a session
/// allowed to turn it off; raises 42501 for any other session with it off.
pub(crate) fn capture_on() -> bool {
    if crate::CAPTURE.get() {
        return true;
    }
    if unsafe { may_skip_capture() } {
        return false;
    }
    ereport!(
        ERROR,
        PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
        "webhooks.capture = off is only for superusers and members of webhooks_admin",
        "Changes to tracked tables are always captured for other roles; RESET webhooks.capture."
    );
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

/// Raises 42501 for a capture trigger on a table that is not tracked.
fn not_tracked(name: &str, what: &str) -> ! {
    ereport!(
        ERROR,
        PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
        format!("{name}: {what} is not tracked by pg_webhooks"),
        "Capture triggers are made by webhooks.track() and webhooks.track_event(); their settings come from \
         webhooks.source and webhooks.source_event, never from the trigger."
    );
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
    crate::notify_once();
    pg_sys::Datum::from(0usize)
}

/// `webhooks.apply_payload(source regclass, data jsonb) RETURNS jsonb`,
/// STRICT: the table's payload function (from webhooks.source) applied to
/// a document, as the function's owner. For capture_commit(), which runs as
/// the extension's owner; nobody else may execute it.
///
/// # Safety
/// Called by the function manager with two non-NULL arguments.
#[no_mangle]
#[pg_guard]
pub unsafe extern "C-unwind" fn apply_payload(fcinfo: pg_sys::FunctionCallInfo) -> pg_sys::Datum {
    let relid = pg_sys::Oid::from(pgrx::fcinfo::pg_getarg_datum_raw(fcinfo, 0).value() as u32);
    let data = pgrx::fcinfo::pg_getarg_datum_raw(fcinfo, 1);
    // (Called for every row at commit: the settings kept per backend serve.)
    let settings = kept_settings(relid)
        .unwrap_or_else(|| not_tracked("webhooks.apply_payload()", &format!("table {}", table_name(relid))));
    match settings.payload {
        Some(function) => pg_sys::Datum::from(run_payload(function, data.cast_mut_ptr())),
        None => data,
    }
}

/// The payload function applied to a document: as the function's owner
/// (who could run it anyway), never as the writer or the extension's owner;
/// search_path fixed (a writer's schema must not resolve its names) unless
/// the function sets its own; in a security-restricted operation.
unsafe fn run_payload(function: pg_sys::Oid, data: *mut pg_sys::Jsonb) -> *mut pg_sys::Jsonb {
    let tuple = pg_sys::SearchSysCache1(
        pg_sys::SysCacheIdentifier::PROCOID as i32,
        pg_sys::Datum::from(function),
    );
    if tuple.is_null() {
        ereport!(
            ERROR,
            PgSqlErrorCode::ERRCODE_UNDEFINED_FUNCTION,
            "webhooks.capture: the payload function in this table's settings does not exist",
            "It was dropped, or renamed where pg_webhooks could not follow: track the table again with its \
             payload function (see webhooks.sources)."
        );
    }
    let proc = &*pg_sys::GETSTRUCT(tuple).cast::<pg_sys::FormData_pg_proc>();
    let owner = proc.proowner;
    // The settings were checked when they were written (check_payload()),
    // but the function may have been altered since: calling one of another
    // shape would read its result as a jsonb pointer.
    let fit = proc.pronargs == 1
        && *proc
            .proargtypes
            .values
            .as_slice(1)
            .first()
            .unwrap_or(&pg_sys::InvalidOid)
            == pg_sys::JSONBOID
        && proc.prorettype == pg_sys::JSONBOID
        && !proc.proretset
        && proc.prokind == pg_sys::PROKIND_FUNCTION as std::ffi::c_char;
    let mut isnull = true;
    let config = pg_sys::SysCacheGetAttr(
        pg_sys::SysCacheIdentifier::PROCOID as i32,
        tuple,
        pg_sys::Anum_pg_proc_proconfig as pg_sys::AttrNumber,
        &mut isnull,
    );
    let config: Vec<Option<String>> = if isnull {
        Vec::new()
    } else {
        pgrx::FromDatum::from_datum(config, false).unwrap_or_default()
    };
    pg_sys::ReleaseSysCache(tuple);
    if !fit {
        ereport!(
            ERROR,
            PgSqlErrorCode::ERRCODE_INVALID_FUNCTION_DEFINITION,
            "webhooks.capture: the payload function must take one jsonb argument and return jsonb"
        );
    }
    if !config.iter().flatten().all(|c| setting_ends_with_pg_temp(c)) {
        ereport!(
            ERROR,
            PgSqlErrorCode::ERRCODE_INVALID_FUNCTION_DEFINITION,
            "webhooks.capture: the payload function sets a search_path that does not end with pg_temp",
            "It runs as its owner in the writer's session: ALTER FUNCTION ... SET search_path = your_schema, pg_temp."
        );
    }
    let (result, isnull) = with_fixed_search_path(|| {
        as_role(owner, || {
            let mut flinfo: pg_sys::FmgrInfo = std::mem::zeroed();
            pg_sys::fmgr_info(function, &mut flinfo);
            let call = pg_sys::palloc0(
                std::mem::size_of::<pg_sys::FunctionCallInfoBaseData>() + std::mem::size_of::<pg_sys::NullableDatum>(),
            )
            .cast::<pg_sys::FunctionCallInfoBaseData>();
            (*call).flinfo = &mut flinfo;
            (*call).nargs = 1;
            (*call).fncollation = pg_sys::InvalidOid;
            let arg = (*call).args.as_mut_slice(1);
            arg[0].value = pg_sys::Datum::from(data);
            arg[0].isnull = false;
            let Some(address) = flinfo.fn_addr else {
                return (pg_sys::Datum::from(0usize), true);
            };
            let result = pg_sys::submodules::ffi::pg_guard_ffi_boundary(|| address(call));
            (result, (*call).isnull)
        })
    });
    if isnull {
        ereport!(
            ERROR,
            PgSqlErrorCode::ERRCODE_NULL_VALUE_NOT_ALLOWED,
            "webhooks.capture: the payload function returned NULL",
            "A payload function must return the event's data as a JSON value."
        );
    }
    result.cast_mut_ptr()
}

/// Whether a `name=value` setting of a function leaves the writer's
/// temporary schema last (or is not search_path at all).
fn setting_ends_with_pg_temp(setting: &str) -> bool {
    match setting.strip_prefix("search_path=") {
        None => true,
        Some(path) => search_path_ends_with_pg_temp(path),
    }
}

/// Whether a search_path value names `pg_temp` last, split and unquoted as
/// PostgreSQL does it (SplitIdentifierString): a quoted `"PG_TEMP"` is
/// another schema, and `"a, pg_temp"` one schema of that name.
pub(crate) fn search_path_ends_with_pg_temp(path: &str) -> bool {
    let Ok(raw) = CString::new(path) else {
        return false;
    };
    unsafe {
        let copy = pg_sys::pstrdup(raw.as_ptr());
        let mut names: *mut pg_sys::List = ptr::null_mut();
        if !pg_sys::SplitIdentifierString(copy, b',' as std::ffi::c_char, &mut names) {
            return false;
        }
        let names = pgrx::PgList::<std::ffi::c_char>::from_pg(names);
        match names.get_ptr(names.len().wrapping_sub(1)) {
            Some(last) => CStr::from_ptr(last).to_bytes() == b"pg_temp",
            None => false,
        }
    }
}

/// The event's data shaped by the payload function (not for deferred
/// tables: capture_commit() applies it at commit), within the size limit.
unsafe fn with_payload(mut change: Change, s: &Settings) -> Change {
    if let (Some(function), false) = (s.payload, s.deferred) {
        change.data = run_payload(function, change.data);
    }
    check_event_size(change.data.cast(), &s.source);
    change
}

/// Raises 54000 when an event's data is bigger than webhooks.max_event_size.
unsafe fn check_event_size(data: *mut pg_sys::varlena, source: &CStr) {
    let size = pgrx::varlena::varsize_any(data);
    let limit = crate::MAX_EVENT_SIZE.get().max(0) as usize;
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

/// A partition's ancestors, nearest first (none for a table that is no
/// partition). Looked up once per table and backend: the settings are kept.
unsafe fn partition_ancestors(rel: pg_sys::Relation) -> Vec<pg_sys::Oid> {
    if !(*(*rel).rd_rel).relispartition {
        return Vec::new();
    }
    let relid = (*rel).rd_id;
    Spi::connect(|client| {
        let rows = client.select(
            "SELECT a.relid::pg_catalog.oid FROM pg_catalog.pg_partition_ancestors($1::pg_catalog.oid::pg_catalog.regclass) \
               WITH ORDINALITY a(relid, n) ORDER BY a.n",
            None,
            &[relid.into()],
        )?;
        let mut ancestors = Vec::new();
        for row in rows {
            if let Some(oid) = row.get::<pg_sys::Oid>(1)? {
                if oid != relid {
                    ancestors.push(oid);
                }
            }
        }
        Ok::<_, pgrx::spi::Error>(ancestors)
    })
    .unwrap_or_default()
}

/// The table's settings (a partition's are those of its nearest tracked
/// ancestor unless it is tracked itself): kept until its (or that
/// ancestor's) relcache entry is invalidated.
unsafe fn settings_for(rel: pg_sys::Relation) -> Rc<Settings> {
    let relid = (*rel).rd_id;
    let found = kept_settings(relid).or_else(|| {
        let settings = Rc::new(
            partition_ancestors(rel)
                .into_iter()
                .find_map(|a| try_load_settings(a))?,
        );
        SETTINGS.with(|all| all.borrow_mut().insert(relid, settings.clone()));
        Some(settings)
    });
    found.unwrap_or_else(|| not_tracked("webhooks.capture()", &format!("table {}", table_name(relid))))
}

/// A tracked table's own settings, from the per-backend cache or loaded
/// into it (None if it is not tracked itself).
unsafe fn kept_settings(relid: pg_sys::Oid) -> Option<Rc<Settings>> {
    if let Some(settings) = SETTINGS.with(|all| all.borrow().get(&relid).cloned()) {
        return Some(settings);
    }
    let settings = Rc::new(try_load_settings(relid)?);
    SETTINGS.with(|all| all.borrow_mut().insert(relid, settings.clone()));
    Some(settings)
}

unsafe fn event_settings_for(rel: pg_sys::Relation, trigger: *mut pg_sys::Trigger) -> Rc<Settings> {
    let relid = (*rel).rd_id;
    let tgoid = (*trigger).tgoid;
    if let Some(settings) = EVENT_SETTINGS.with(|all| all.borrow().get(&tgoid).cloned()) {
        return settings;
    }
    // The trigger's name says which business event it is (track_event()
    // names it); the event must be one of this very table.
    let name = CStr::from_ptr((*trigger).tgname).to_string_lossy();
    let id = name
        .strip_prefix("webhooks_event_")
        .and_then(|id| id.parse::<i64>().ok());
    let Some(id) = id else {
        not_tracked("webhooks.capture_event()", &format!("trigger {name}"));
    };
    // (Postgres clones a partitioned table's row triggers to its partitions.)
    let loaded = try_load_event_settings(relid, id).or_else(|| {
        partition_ancestors(rel)
            .into_iter()
            .find_map(|a| try_load_event_settings(a, id))
    });
    let Some(settings) = loaded else {
        not_tracked(
            "webhooks.capture_event()",
            &format!("business event {id} of this table"),
        );
    };
    let settings = Rc::new(settings);
    EVENT_SETTINGS.with(|all| all.borrow_mut().insert(tgoid, settings.clone()));
    settings
}

fn cstrings(v: Option<Vec<Option<String>>>) -> Vec<CString> {
    v.unwrap_or_default()
        .into_iter()
        .flatten()
        .filter_map(|s| CString::new(s).ok())
        .collect()
}

type Loaded = (
    Option<String>,
    Option<String>,
    Option<Vec<Option<String>>>,
    Option<String>,
    Option<Vec<Option<String>>>,
    Option<Vec<Option<String>>>,
    Option<pg_sys::Oid>,
    Option<bool>,
);

/// One row of settings, read as the extension's owner with a fixed
/// search_path. Columns: event or resource, qualified table name, keys,
/// tenant, excluded, listed, payload, deferred.
unsafe fn load(query: &str, args: &[pgrx::datum::DatumWithOid]) -> Option<Loaded> {
    with_fixed_search_path(|| {
        as_owner(|| {
            Spi::connect(|client| {
                let table = client.select(query, Some(1), args)?;
                if table.is_empty() {
                    return Ok(None);
                }
                let row = table.first();
                Ok::<_, pgrx::spi::Error>(Some((
                    row.get::<String>(1)?,
                    row.get::<String>(2)?,
                    row.get::<Vec<Option<String>>>(3)?,
                    row.get::<String>(4)?,
                    row.get::<Vec<Option<String>>>(5)?,
                    row.get::<Vec<Option<String>>>(6)?,
                    row.get::<pg_sys::Oid>(7)?,
                    row.get::<bool>(8)?,
                )))
            })
            .ok()
            .flatten()
        })
    })
}

fn settings_of(relid: pg_sys::Oid, loaded: Loaded, event: impl FnOnce(String) -> EventName) -> Option<Settings> {
    let (Some(name), Some(source), keys, tenant, exclude, columns, payload, Some(deferred)) = loaded else {
        return None;
    };
    Some(Settings {
        relid,
        event: event(name),
        source: CString::new(source).ok()?,
        keys: cstrings(keys),
        tenant: tenant.and_then(|t| CString::new(t).ok()),
        exclude: cstrings(exclude),
        columns: columns.map(|c| cstrings(Some(c))),
        // (InvalidOid kept: see payload_column().)
        payload,
        deferred,
        table_columns: RefCell::new(None),
    })
}

/// schema.table of a relation, for messages.
unsafe fn table_name(relid: pg_sys::Oid) -> String {
    let name = pg_sys::get_rel_name(relid);
    let schema = pg_sys::get_namespace_name(pg_sys::get_rel_namespace(relid));
    if name.is_null() || schema.is_null() {
        return relid.to_u32().to_string();
    }
    format!(
        "{}.{}",
        CStr::from_ptr(schema).to_string_lossy(),
        CStr::from_ptr(name).to_string_lossy()
    )
}

const TABLE_NAME: &str = "pg_catalog.format('%I.%I', n.nspname, c.relname)";

/// The payload function's OID in a settings query on `alias`, as
/// webhooks.payload_function() finds it; InvalidOid (never a function)
/// stands for one the settings name but that is gone, so run_payload()
/// refuses the write instead of sending the row unshaped.
/// A schema still at 0.1.0 (this library installed, ALTER EXTENSION ...
/// UPDATE not run yet) has a regprocedure column instead.
unsafe fn payload_column(alias: &str) -> String {
    let updated = with_fixed_search_path(|| {
        as_owner(|| {
            Spi::get_one::<bool>(
                "SELECT pg_catalog.to_regprocedure('webhooks.payload_function(pg_catalog.text, pg_catalog.oid, \
                                                    pg_catalog.text, pg_catalog.name)') IS NOT NULL",
            )
            .ok()
            .flatten()
            .unwrap_or(false)
        })
    });
    if updated {
        format!(
            "CASE WHEN {alias}.payload IS NOT NULL \
                  THEN COALESCE(webhooks.payload_function({alias}.payload, {alias}.payload_oid, \
                                                          {alias}.payload_scope, {alias}.payload_owner)\
                                               ::pg_catalog.oid, 0::pg_catalog.oid) END"
        )
    } else {
        format!("{alias}.payload::pg_catalog.oid")
    }
}

unsafe fn try_load_settings(relid: pg_sys::Oid) -> Option<Settings> {
    let payload = payload_column("s");
    let query = format!(
        "SELECT s.resource, {TABLE_NAME}, s.key_columns::pg_catalog.text[], s.tenant_column::pg_catalog.text, \
                s.exclude_columns::pg_catalog.text[], s.columns::pg_catalog.text[], \
                {payload}, s.deferred \
           FROM webhooks.source s \
           JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) s.source::pg_catalog.oid \
           JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace \
          WHERE s.source OPERATOR(pg_catalog.=) $1::pg_catalog.oid::pg_catalog.regclass"
    );
    load(&query, &[relid.into()]).and_then(|l| settings_of(relid, l, EventName::Resource))
}

unsafe fn try_load_event_settings(relid: pg_sys::Oid, id: i64) -> Option<Settings> {
    // A tracked table's excluded and tenant columns apply to its business
    // events too; the key is always the primary key.
    let payload = payload_column("x");
    let query = format!(
        "SELECT x.event, {TABLE_NAME}, webhooks.primary_key(x.source)::pg_catalog.text[], \
                s.tenant_column::pg_catalog.text, s.exclude_columns::pg_catalog.text[], NULL::pg_catalog.text[], \
                {payload}, false \
           FROM webhooks.source_event x \
           JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) x.source::pg_catalog.oid \
           JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace \
           LEFT JOIN webhooks.source s ON s.source OPERATOR(pg_catalog.=) x.source \
          WHERE x.id OPERATOR(pg_catalog.=) $2 \
            AND x.source OPERATOR(pg_catalog.=) $1::pg_catalog.oid::pg_catalog.regclass"
    );
    load(&query, &[relid.into(), id.into()]).and_then(|l| settings_of(relid, l, EventName::Business))
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
struct Change {
    key: Option<String>,
    tenant: Option<String>,
    data: *mut pg_sys::Jsonb,
    previous: *mut pg_sys::Jsonb,
}

/// The event of one row (with its old version, and whether its key
/// changed, for an UPDATE); None for an UPDATE that changed no sent column
/// (or none of `columns =>`), unless `always`.
unsafe fn change_of(columns: &Columns, row: RowValues, old: Option<(RowValues, bool)>, always: bool) -> Option<Change> {
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
unsafe fn table_cache(rel: pg_sys::Relation) -> *mut RowCache {
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
unsafe fn rekeyed(new: *mut pg_sys::TupleTableSlot, old: *mut pg_sys::TupleTableSlot, keys: &[usize]) -> bool {
    keys_differ(
        (*new).tts_tupleDescriptor,
        keys,
        ((*new).tts_values, (*new).tts_isnull),
        ((*old).tts_values, (*old).tts_isnull),
    )
}

/// Whether two deformed versions of a row differ in a key column (compared
/// as bytes).
unsafe fn keys_differ(
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
        crate::notify_once();
    }
    if written > 0 && s.deferred {
        STAGED.with(|staged| {
            let mut staged = staged.borrow_mut();
            if !staged.contains(&s.relid) {
                staged.push(s.relid);
            }
        });
    }
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
