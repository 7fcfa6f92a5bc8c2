//! The extension's settings (`webhooks.*` GUCs): each one's definition,
//! bounds and help text, registered by `_PG_init`, and the SQL functions
//! that read them for the extension's SQL. In one file so that every
//! setting a DBA can change is listed in one place.

use pgrx::guc::{GucContext, GucFlags, GucRegistry, GucSetting};
use pgrx::prelude::*;

pub(crate) static CAPTURE: GucSetting<bool> = GucSetting::<bool>::new(true);
pub(crate) static NOTIFY: GucSetting<bool> = GucSetting::<bool>::new(true);
static REQUIRE_HTTPS: GucSetting<bool> = GucSetting::<bool>::new(true);
static RESPONSE_BODY_LIMIT: GucSetting<i32> = GucSetting::<i32>::new(8192);
static MAX_ENDPOINTS_PER_TENANT: GucSetting<i32> = GucSetting::<i32>::new(0);
/// Largest event document (bytes of `data` as stored): bounds what a poller
/// holds per delivery.
pub(crate) static MAX_EVENT_SIZE: GucSetting<i32> = GucSetting::<i32>::new(1 << 20);
// Read by SQL (webhooks.partition_interval()), which validates it.
static PARTITION_INTERVAL: GucSetting<Option<std::ffi::CString>> =
    GucSetting::<Option<std::ffi::CString>>::new(Some(c"1 day"));

/// Defines every setting (from `_PG_init`, once per backend).
pub(crate) fn register() {
    GucRegistry::define_bool_guc(
        c"webhooks.capture",
        c"Capture changes of tracked tables in this session.",
        c"Turn off for bulk loads and backfills that must not produce webhooks (superusers and webhooks_admin members only; others get an error when they write).",
        &CAPTURE,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_bool_guc(
        c"webhooks.notify",
        c"NOTIFY pollers once per transaction that produced deliveries.",
        c"Off leaves pollers to their jittered fallback poll; useful when NOTIFY's commit-time lock matters more than latency.",
        &NOTIFY,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_bool_guc(
        c"webhooks.require_https",
        c"Refuse endpoint URLs that are not https (localhost, 127.0.0.0/8 and [::1] are exempt).",
        c"",
        &REQUIRE_HTTPS,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"webhooks.response_body_limit",
        c"Characters of each response body kept in webhooks.attempt.",
        c"Longer bodies are truncated; 0 keeps none.",
        &RESPONSE_BODY_LIMIT,
        0,
        1 << 20,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"webhooks.max_event_size",
        c"Largest event data, in bytes (as stored): a bigger event is refused with SQLSTATE 54000.",
        c"Bounds the memory a poller needs per delivery. Leave large columns out (exclude_columns) or shape data with a payload function rather than raising it far.",
        &MAX_EVENT_SIZE,
        1024,
        1 << 30,
        GucContext::Suset,
        GucFlags::UNIT_BYTE,
    );
    GucRegistry::define_int_guc(
        c"webhooks.max_endpoints_per_tenant",
        c"Most endpoints one tenant may have (0: no limit).",
        c"Endpoints without a tenant count as one group.",
        &MAX_ENDPOINTS_PER_TENANT,
        0,
        1_000_000,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_string_guc(
        c"webhooks.partition_interval",
        c"Span of each new partition of webhooks.event and webhooks.attempt.",
        c"An interval from 1 second to 31 days, without months; webhooks.purge() drops whole partitions.",
        &PARTITION_INTERVAL,
        GucContext::Suset,
        GucFlags::default(),
    );
}

/// Is capture on in this session (`webhooks.capture`)? Off only counts for
/// superusers and webhooks_admin members; others get 42501.
#[pg_extern(stable, parallel_safe)]
fn capture_enabled() -> bool {
    crate::capture::capture_on()
}

/// `webhooks.max_endpoints_per_tenant` (0: no limit).
#[pg_extern(stable, parallel_safe)]
fn max_endpoints_per_tenant() -> i32 {
    MAX_ENDPOINTS_PER_TENANT.get()
}

/// Is `webhooks.require_https` on?
#[pg_extern(stable, parallel_safe)]
fn https_required() -> bool {
    REQUIRE_HTTPS.get()
}
