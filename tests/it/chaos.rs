//! The short fault-injection run (the full one is `make chaos`): pollers
//! SIGKILLed, Postgres restarted with -m immediate, a receiver failing most
//! requests, three pollers at once — and every delivery guarantee checked.

use pg_webhooks_tests::chaos::{run, Plan};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_guarantee_holds_under_kills_restarts_and_failing_receivers() {
    let plan = Plan::short();
    let report = run(&plan).await.expect("chaos run");
    println!("{report}");
    assert_eq!(report.violations(), Vec::<String>::new(), "{report}");
    assert_eq!(report.kills, plan.kills, "{report}");
    assert_eq!(report.restarts, plan.restarts, "{report}");
    // The faults really happened: duplicates or take-overs, and failures.
    assert!(report.requests > report.delivered_requests, "{report}");
}
