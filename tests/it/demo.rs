//! `make demo` is the newcomer's first contact: it must keep working.

use pg_webhooks_tests::poller::built_binary;
use std::process::Command;

#[test]
fn the_demo_runs_and_shows_real_deliveries() {
    let demo = built_binary("demo", "cargo build -p pg_webhooks_tests --bins").unwrap();
    let out = Command::new(demo).output().expect("run the demo");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "demo failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("signature ok"), "{stdout}");
    assert!(!stdout.contains("INVALID"), "{stdout}");
    assert!(stdout.contains("succeeded"), "the delivery log is printed: {stdout}");
    assert!(stdout.contains("503"), "the retried delivery is shown: {stdout}");
    assert!(
        stdout.contains("success_rate"),
        "it ends with webhooks.stats(): {stdout}"
    );
}
