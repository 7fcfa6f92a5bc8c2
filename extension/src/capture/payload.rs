//! Payload functions: a table's own function that shapes an event's data
//! before it is written. It is code the writer did not write and the
//! extension does not trust, so it runs as its owner (never as the writer
//! or the extension's owner), with search_path fixed unless it sets one
//! ending with pg_temp, in a security-restricted operation, and only after
//! its shape is checked again (it may have been altered since track()).
//!
//! Used in two places: by the triggers for tables that are not deferred
//! (`with_payload`), and through `webhooks.apply_payload()` by
//! capture_commit() for deferred ones, whose rows are shaped at commit.

use super::change::Change;
use super::events::check_event_size;
use super::rights::{as_role, with_fixed_search_path};
use super::settings::{kept_settings, not_tracked, table_name, Settings};
use pgrx::pg_sys;
use pgrx::prelude::*;
use pgrx::PgSqlErrorCode;
use std::ffi::{CStr, CString};
use std::ptr;

finfo!(pg_finfo_apply_payload);

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
            "It was dropped (a function made again with its signature is not taken for it), or the settings \
             came from pg_upgrade or a restore where its owner is another: track the table again with its \
             payload function (webhooks.source.payload names the one it had)."
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
pub(super) unsafe fn with_payload(mut change: Change, s: &Settings) -> Change {
    if let (Some(function), false) = (s.payload, s.deferred) {
        change.data = run_payload(function, change.data);
    }
    check_event_size(change.data.cast(), &s.source);
    change
}
