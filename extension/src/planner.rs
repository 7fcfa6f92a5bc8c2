//! The planner hook: capture statements never get JIT. A session keeps the
//! plans of the capture statements (the engine's prepared INSERTs,
//! PL/pgSQL's in commit_staged()), so a plan that got JIT would be
//! JIT-compiled again on every later statement, even for a single row.
//! `SET jit = off` on the functions would cost every captured statement
//! the setting's save and restore; this hook costs nothing unless the
//! planner has already chosen JIT (BENCHMARKS.md has the figures). Its own
//! file because it is a hook on every statement of the backend, not part
//! of making events.

use pgrx::pg_sys;
use pgrx::prelude::*;

static mut PREVIOUS_PLANNER: pg_sys::planner_hook_type = None;

/// Installs the planner hook (from `_PG_init`, once per backend).
pub fn install_planner_hook() {
    unsafe {
        PREVIOUS_PLANNER = pg_sys::planner_hook;
        pg_sys::planner_hook = Some(plan_inserts_into_history_without_jit);
    }
}

/// Plans as usual, then drops JIT from INSERTs into pg_webhooks' own tables
/// (the capture statements; webhooks.emit's single rows never reach JIT).
#[pg_guard]
unsafe extern "C-unwind" fn plan_inserts_into_history_without_jit(
    parse: *mut pg_sys::Query,
    query_string: *const std::ffi::c_char,
    cursor_options: std::ffi::c_int,
    bound_params: pg_sys::ParamListInfo,
) -> *mut pg_sys::PlannedStmt {
    let stmt = match PREVIOUS_PLANNER {
        // Another extension's hook may raise an ERROR (a longjmp): let pgrx
        // carry it across this Rust frame.
        Some(previous) => pg_sys::submodules::ffi::pg_guard_ffi_boundary(|| {
            previous(parse, query_string, cursor_options, bound_params)
        }),
        None => pg_sys::standard_planner(parse, query_string, cursor_options, bound_params),
    };
    if (*stmt).jitFlags != 0 && inserts_into_our_schema(stmt) {
        (*stmt).jitFlags = 0;
    }
    stmt
}

unsafe fn inserts_into_our_schema(stmt: *mut pg_sys::PlannedStmt) -> bool {
    if (*stmt).commandType != pg_sys::CmdType::CMD_INSERT || (*stmt).resultRelations.is_null() {
        return false;
    }
    let index = pg_sys::list_nth_int((*stmt).resultRelations, 0);
    let rte = pg_sys::list_nth((*stmt).rtable, index - 1).cast::<pg_sys::RangeTblEntry>();
    if rte.is_null() || (*rte).rtekind != pg_sys::RTEKind::RTE_RELATION {
        return false;
    }
    let schema = pg_sys::get_namespace_name(pg_sys::get_rel_namespace((*rte).relid));
    !schema.is_null() && std::ffi::CStr::from_ptr(schema).to_bytes() == b"webhooks"
}
