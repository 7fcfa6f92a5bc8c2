//! Whose rights each step of capture runs with. The engine runs as the
//! writer; only reading the settings and writing the event rows switch to
//! the extension's owner (`as_owner`), and a payload function runs as its
//! own owner (`as_role`), both in a security-restricted operation, with
//! `with_fixed_search_path` where code that is not ours, or SQL that names
//! things without their schema, runs. Here too is who may turn capture off
//! (`capture_on`): the one rule that lets a write go unseen.
//!
//! These switches are the whole of the engine's trust boundary, so they sit
//! in one file rather than beside each caller.

use pgrx::pg_sys;
use pgrx::prelude::*;
use pgrx::PgSqlErrorCode;
use std::cell::Cell;

thread_local! {
    static EXTENSION_OWNER: Cell<pg_sys::Oid> = const { Cell::new(pg_sys::InvalidOid) };
}

/// Runs `f` as the extension's owner, in a security-restricted operation.
/// No restore is needed on error: the (sub)transaction's abort restores the
/// user, as it does for SECURITY DEFINER functions.
pub(super) unsafe fn as_owner<T>(f: impl FnOnce() -> T) -> T {
    as_role(extension_owner(), f)
}

pub(super) unsafe fn as_role<T>(role: pg_sys::Oid, f: impl FnOnce() -> T) -> T {
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
pub(super) unsafe fn with_fixed_search_path<T>(f: impl FnOnce() -> T) -> T {
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
    if crate::guc::CAPTURE.get() {
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
