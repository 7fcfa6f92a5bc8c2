//! webhooks.max_event_size: an event bigger than the limit is refused with
//! 54000 by every kind of capture and by emit(), so that no poller must
//! hold an unbounded document (SECURITY.md, boundary 9f).

use super::setup;
use pg_webhooks_tests::cluster::refused;

/// An event bigger than webhooks.max_event_size is refused with 54000 at
/// capture (one-row, many-row, business and deferred capture) and in emit(),
/// so that no poller must hold an unbounded document; leaving the column
/// out of the event makes the same write go through.
#[tokio::test]
async fn events_bigger_than_the_limit_are_refused() {
    let (_c, db) = setup().await;
    db.batch_execute(
        "CREATE TABLE public.docs (id int PRIMARY KEY, body text, state text);
         SELECT webhooks.track('public.docs', resource => 'doc');
         SELECT webhooks.track_event('public.docs', 'doc.signed', $$NEW.state = 'signed'$$);
         CREATE TABLE public.staged_docs (id int PRIMARY KEY, body text);
         SELECT webhooks.track('public.staged_docs', resource => 'staged_doc', deferred => true);
         ALTER DATABASE erp SET webhooks.max_event_size = 100000;",
    )
    .await
    .unwrap();
    let db = _c.connect("erp").await.unwrap();
    for sql in [
        "INSERT INTO public.docs VALUES (1, repeat('x', 200000), 'new')",
        "INSERT INTO public.docs SELECT g, repeat('x', 200000), 'new' FROM generate_series(2, 4) g",
        "INSERT INTO public.staged_docs VALUES (1, repeat('x', 200000))",
        "SELECT webhooks.emit('doc.big', jsonb_build_object('body', repeat('x', 200000)))",
    ] {
        refused(&db, sql, "54000").await;
    }
    db.batch_execute(
        "INSERT INTO public.docs VALUES (1, 'small', 'new');
         SELECT webhooks.track('public.docs', resource => 'doc', exclude_columns => '{body}');",
    )
    .await
    .unwrap();
    // Business events leave out what the table excludes, too.
    db.batch_execute("UPDATE public.docs SET body = repeat('x', 200000), state = 'signed' WHERE id = 1")
        .await
        .unwrap();
    let n: i64 = db
        .query_one("SELECT count(*) FROM webhooks.event WHERE source = 'public.docs'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 3, "created, signed and updated, without the body");
}
