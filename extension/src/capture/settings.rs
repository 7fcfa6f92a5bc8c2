//! What a tracked table (or one of its business events) sends, as the
//! engine reads it: from webhooks.source or webhooks.source_event, keyed by
//! the table the trigger fires on (never by a trigger argument, so a capture
//! trigger on a table that is not tracked raises 42501), read as the
//! extension's owner with a fixed search_path.
//!
//! Settings are kept per backend: every captured statement needs them, and
//! apply_payload() every staged row at commit. What is kept is dropped when the table's relcache entry is invalidated:
//! webhooks.invalidate_capture() (called by webhooks.source_changed() on
//! every change of the settings) invalidates it, and Postgres does on every
//! ALTER TABLE. The cache, its loading and its invalidation live together
//! here so that they agree on the key.

use super::change::Columns;
use super::rights::{as_owner, with_fixed_search_path};
use pgrx::pg_sys;
use pgrx::prelude::*;
use pgrx::PgSqlErrorCode;
use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::{CStr, CString};
use std::rc::Rc;

finfo!(pg_finfo_invalidate_capture);

/// What a tracked table (or one business event of it) sends.
pub(super) struct Settings {
    /// The tracked table (a partition's settings are its root's).
    pub(super) relid: pg_sys::Oid,
    /// The event name: `<resource>.` plus created/updated/deleted, or a
    /// business event's whole name.
    pub(super) event: EventName,
    pub(super) source: CString,
    pub(super) keys: Vec<CString>,
    pub(super) tenant: Option<CString>,
    pub(super) exclude: Vec<CString>,
    pub(super) columns: Option<Vec<CString>>,
    pub(super) payload: Option<pg_sys::Oid>,
    /// Changes are staged in webhooks.staged_change for capture_commit().
    pub(super) deferred: bool,
    /// Worked out from these settings and the table's columns on first use.
    pub(super) table_columns: RefCell<Option<Rc<Columns>>>,
}

pub(super) enum EventName {
    Resource(String),
    Business(String),
}

thread_local! {
    // Per table (capture) and per trigger (business events, with its table).
    static SETTINGS: RefCell<HashMap<pg_sys::Oid, Rc<Settings>>> = RefCell::new(HashMap::new());
    static EVENT_SETTINGS: RefCell<HashMap<pg_sys::Oid, Rc<Settings>>> = RefCell::new(HashMap::new());
}

/// Relcache invalidation callback: forget the settings of the table (of all
/// tables for InvalidOid).
#[pg_guard]
pub(super) unsafe extern "C-unwind" fn forget_settings(_arg: pg_sys::Datum, relid: pg_sys::Oid) {
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

/// Raises 42501 for a capture trigger on a table that is not tracked.
pub(super) fn not_tracked(name: &str, what: &str) -> ! {
    ereport!(
        ERROR,
        PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
        format!("{name}: {what} is not tracked by pg_webhooks"),
        "Capture triggers are made by webhooks.track() and webhooks.track_event(); their settings come from \
         webhooks.source and webhooks.source_event, never from the trigger."
    );
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
pub(super) unsafe fn settings_for(rel: pg_sys::Relation) -> Rc<Settings> {
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
pub(super) unsafe fn kept_settings(relid: pg_sys::Oid) -> Option<Rc<Settings>> {
    if let Some(settings) = SETTINGS.with(|all| all.borrow().get(&relid).cloned()) {
        return Some(settings);
    }
    let settings = Rc::new(try_load_settings(relid)?);
    SETTINGS.with(|all| all.borrow_mut().insert(relid, settings.clone()));
    Some(settings)
}

pub(super) unsafe fn event_settings_for(rel: pg_sys::Relation, trigger: *mut pg_sys::Trigger) -> Rc<Settings> {
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
pub(super) unsafe fn table_name(relid: pg_sys::Oid) -> String {
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
