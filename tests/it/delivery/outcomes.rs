//! What an answer, or none, leaves in webhooks.attempt: a timeout is an
//! attempt with its error, a redirect is not followed but recorded as the
//! failure it is, response bodies are kept up to the database's
//! webhooks.response_body_limit, and one outcome the database refuses drops
//! no other recorded with it (SECURITY.md, boundary 7).

use super::FAST;
use pg_webhooks_tests::fixture::Env;
use pg_webhooks_tests::poller::Poller;
use pg_webhooks_tests::receiver::Reply;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeouts_are_recorded_as_attempts() {
    let env = Env::orders("timeout => '200ms', retry_schedule => '{}'").await;
    env.receiver
        .set_default(Reply::status(200).delayed(Duration::from_secs(3)));
    let poller = Poller::start(&env.url(), &FAST).unwrap();
    env.insert_orders([1]).await;
    env.all_finished().await;
    poller.stop().await.unwrap();
    let row = env
        .db
        .query_one(
            "SELECT a.status_code, a.error, extract(epoch FROM a.duration)::float8, d.status
               FROM webhooks.attempt a JOIN webhooks.delivery d ON d.id = a.delivery_id",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, Option<i32>>(0), None);
    let error: String = row.get(1);
    assert!(error.contains("timeout"), "{error}");
    let took: f64 = row.get(2);
    assert!((0.15..2.0).contains(&took), "attempt took {took}s");
    assert_eq!(row.get::<_, String>(3), "failed", "an empty schedule means one attempt");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirects_are_not_followed() {
    let env = Env::orders("retry_schedule => '{}'").await;
    env.receiver
        .set_default(Reply::status(302).header("Location", "/elsewhere"));
    let poller = Poller::start(&env.url(), &FAST).unwrap();
    env.insert_orders([1]).await;
    env.all_finished().await;
    poller.stop().await.unwrap();
    let got = env.receiver.received();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].path, "/hooks");
    let (status, code): (String, Option<i32>) = {
        let r = env
            .db
            .query_one("SELECT status, last_status_code FROM webhooks.delivery", &[])
            .await
            .unwrap();
        (r.get(0), r.get(1))
    };
    assert_eq!((status.as_str(), code), ("failed", Some(302)));
}

/// The poller reads as much of a response body as the database keeps
/// (webhooks.response_body_limit(), one home for the setting): 12,000
/// characters under a limit of 20,000, where it used to stop at 8 KiB.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn response_bodies_are_kept_up_to_the_databases_limit() {
    let env = Env::orders("retry_schedule => '{}'").await;
    env.db
        .batch_execute(
            "DO $$ BEGIN
                 EXECUTE format('ALTER DATABASE %I SET webhooks.response_body_limit = 20000', current_database());
             END $$;",
        )
        .await
        .unwrap();
    env.receiver.set_default(Reply::status(200).body(&"x".repeat(12_000)));
    env.db
        .batch_execute("INSERT INTO orders (id, customer) VALUES (1, 'c')")
        .await
        .unwrap();
    let poller = Poller::start(&env.url(), &FAST).unwrap();
    env.all_finished().await;
    poller.stop().await.unwrap();
    let kept: i32 = env
        .db
        .query_one("SELECT length(response_body) FROM webhooks.attempt", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(kept, 12_000);
}

/// One outcome the database refuses must not drop the others recorded with
/// it: a response body with a NUL byte (which Postgres text cannot hold) is
/// stored with U+FFFD in its place, and an outcome the database refuses for
/// any other reason (here a trigger of the test's own) is recorded once more
/// without what the receiver sent, while the rest of its batch is recorded
/// as it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outcome_the_database_refuses_drops_no_other() {
    let env = Env::orders("retry_schedule => '{}'").await;
    env.db
        .batch_execute(
            "CREATE FUNCTION public.refuse_poison() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN
                 IF NEW.response_body LIKE '%poison%' THEN
                     RAISE EXCEPTION 'refused by the test' USING ERRCODE = 'check_violation';
                 END IF;
                 RETURN NEW;
             END $$;
             CREATE TRIGGER refuse_poison BEFORE INSERT ON webhooks.attempt
                 FOR EACH ROW EXECUTE FUNCTION public.refuse_poison();",
        )
        .await
        .unwrap();
    env.receiver.set_default(Reply::status(200).body("fine"));
    env.receiver
        .script([Reply::status(200).body("a\0b"), Reply::status(200).body("poison")]);
    // All 20 changes in one transaction: their outcomes share batches.
    env.db
        .batch_execute("INSERT INTO orders (id, customer) SELECT g, 'c' FROM generate_series(1, 20) g")
        .await
        .unwrap();
    let poller = Poller::start(&env.url(), &FAST).unwrap();
    env.all_finished().await;
    poller.stop().await.unwrap();
    let rows = env
        .db
        .query(
            "SELECT d.status, a.response_body, a.error FROM webhooks.delivery d
               JOIN webhooks.attempt a ON a.delivery_id = d.id ORDER BY a.id",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), 20, "one attempt recorded per delivery");
    let bodies: Vec<(String, Option<String>, Option<String>)> =
        rows.iter().map(|r| (r.get(0), r.get(1), r.get(2))).collect();
    assert!(bodies.iter().all(|(status, _, _)| status == "succeeded"), "{bodies:?}");
    assert!(
        bodies.iter().any(|(_, body, _)| body.as_deref() == Some("a\u{FFFD}b")),
        "the NUL byte replaced: {bodies:?}"
    );
    let refused: Vec<&(String, Option<String>, Option<String>)> =
        bodies.iter().filter(|(_, body, _)| body.is_none()).collect();
    assert_eq!(refused.len(), 1, "{bodies:?}");
    assert!(
        refused[0]
            .2
            .as_deref()
            .is_some_and(|e| e.contains("could not be recorded: 23514")),
        "{refused:?}"
    );
    assert_eq!(
        bodies.iter().filter(|(_, b, _)| b.as_deref() == Some("fine")).count(),
        18
    );
}
