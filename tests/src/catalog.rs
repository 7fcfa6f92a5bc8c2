//! A normalised dump of what pg_webhooks has in a database: every object in
//! schema webhooks and the objects it puts on tracked tables, one sorted
//! line each, with owners, ACLs, function bodies and settings. Two installs
//! that dump the same are the same install. Dated partitions (made at run
//! time, named by their day) are left out.

use tokio_postgres::Client;

/// Each query returns one text column: one line per object property.
const QUERIES: &[&str] = &[
    // Schema and extension membership.
    "SELECT 'schema webhooks owner=' || pg_get_userbyid(n.nspowner) || ' acl=' || coalesce(n.nspacl::text, '')
       FROM pg_namespace n WHERE n.nspname = 'webhooks'",
    "SELECT 'member ' || pg_describe_object(d.classid, d.objid, d.objsubid)
       FROM pg_depend d JOIN pg_extension x ON x.oid = d.refobjid
      WHERE d.refclassid = 'pg_extension'::regclass AND x.extname = 'pg_webhooks' AND d.deptype = 'e'
        AND NOT EXISTS (SELECT 1 FROM webhooks.partition p WHERE d.classid = 'pg_class'::regclass
                           AND d.objid = ('webhooks.' || quote_ident(p.name))::regclass::oid)",
    // Relations.
    "SELECT format('relation %s kind=%s owner=%s acl=%s options=%s persistence=%s', c.oid::regclass, c.relkind,
                   pg_get_userbyid(c.relowner),
                   (SELECT string_agg(a::text, ',' ORDER BY a::text) FROM unnest(c.relacl) a),
                   c.reloptions, c.relpersistence)
       FROM pg_class c
      WHERE c.relnamespace = 'webhooks'::regnamespace
        AND c.oid NOT IN (SELECT ('webhooks.' || quote_ident(name))::regclass FROM webhooks.partition)
        AND NOT (c.relkind = 'i' AND EXISTS (SELECT 1 FROM pg_index i JOIN webhooks.partition p
                                                    ON ('webhooks.' || quote_ident(p.name))::regclass::oid = i.indrelid WHERE i.indexrelid = c.oid))",
    // Columns, by position among live columns.
    "SELECT format('column %s #%s %s type=%s notnull=%s default=%s identity=%s generated=%s', c.oid::regclass,
                   row_number() OVER (PARTITION BY c.oid ORDER BY a.attnum), a.attname,
                   format_type(a.atttypid, a.atttypmod), a.attnotnull,
                   pg_get_expr(ad.adbin, ad.adrelid), a.attidentity, a.attgenerated)
       FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
       LEFT JOIN pg_attrdef ad ON ad.adrelid = c.oid AND ad.adnum = a.attnum
      WHERE c.relnamespace = 'webhooks'::regnamespace AND c.relkind IN ('r', 'p', 'v', 'c')
        AND c.oid NOT IN (SELECT ('webhooks.' || quote_ident(name))::regclass FROM webhooks.partition)",
    "SELECT format('constraint %s %s %s', conrelid::regclass, conname, pg_get_constraintdef(oid))
       FROM pg_constraint
      WHERE connamespace = 'webhooks'::regnamespace
        AND conrelid NOT IN (SELECT ('webhooks.' || quote_ident(name))::regclass FROM webhooks.partition)",
    "SELECT format('index %s', pg_get_indexdef(i.indexrelid))
       FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid
      WHERE c.relnamespace = 'webhooks'::regnamespace
        AND c.oid NOT IN (SELECT ('webhooks.' || quote_ident(name))::regclass FROM webhooks.partition)",
    "SELECT format('view %s %s', c.oid::regclass, pg_get_viewdef(c.oid))
       FROM pg_class c WHERE c.relnamespace = 'webhooks'::regnamespace AND c.relkind = 'v'",
    "SELECT format('sequence %s %s', s.seqrelid::regclass, s.seqtypid::regtype)
       FROM pg_sequence s JOIN pg_class c ON c.oid = s.seqrelid
      WHERE c.relnamespace = 'webhooks'::regnamespace",
    // Functions: the whole definition (body, volatility, SECURITY DEFINER,
    // SET clauses), owner and ACL.
    "SELECT format('function %s owner=%s acl=%s definer=%s config=%s', p.oid::regprocedure,
                   pg_get_userbyid(p.proowner),
                   (SELECT string_agg(a::text, ',' ORDER BY a::text) FROM unnest(p.proacl) a),
                   p.prosecdef, p.proconfig)
       FROM pg_proc p WHERE p.pronamespace = 'webhooks'::regnamespace",
    "SELECT format('function-definition %s %s', p.oid::regprocedure,
                   CASE WHEN p.prokind IN ('f', 'p') THEN pg_get_functiondef(p.oid) END)
       FROM pg_proc p WHERE p.pronamespace = 'webhooks'::regnamespace",
    "SELECT format('type %s kind=%s owner=%s', t.oid::regtype, t.typtype, pg_get_userbyid(t.typowner))
       FROM pg_type t WHERE t.typnamespace = 'webhooks'::regnamespace
        AND t.typrelid NOT IN (SELECT ('webhooks.' || quote_ident(name))::regclass FROM webhooks.partition)
        AND NOT (t.typelem <> 0 AND EXISTS (SELECT 1 FROM pg_type e JOIN webhooks.partition p
                                                   ON ('webhooks.' || quote_ident(p.name))::regclass::oid = e.typrelid WHERE e.oid = t.typelem))",
    // Triggers on pg_webhooks' tables and on tracked tables.
    "SELECT format('trigger %s', pg_get_triggerdef(t.oid))
       FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
      WHERE NOT t.tgisinternal
        AND (c.relnamespace = 'webhooks'::regnamespace
             OR t.tgfoid IN (SELECT oid FROM pg_proc WHERE pronamespace = 'webhooks'::regnamespace))
        AND c.oid NOT IN (SELECT ('webhooks.' || quote_ident(name))::regclass FROM webhooks.partition)",
    "SELECT format('event-trigger %s on=%s tags=%s function=%s enabled=%s owner=%s', e.evtname, e.evtevent,
                   e.evttags, e.evtfoid::regprocedure, e.evtenabled, pg_get_userbyid(e.evtowner))
       FROM pg_event_trigger e
      WHERE e.evtfoid IN (SELECT oid FROM pg_proc WHERE pronamespace = 'webhooks'::regnamespace)",
    // Comments on everything in the schema.
    "SELECT format('comment %s %s', pg_describe_object(d.classoid, d.objoid, d.objsubid), d.description)
       FROM pg_description d
      WHERE (d.classoid = 'pg_proc'::regclass
             AND d.objoid IN (SELECT oid FROM pg_proc WHERE pronamespace = 'webhooks'::regnamespace))
         OR (d.classoid = 'pg_class'::regclass
             AND d.objoid IN (SELECT oid FROM pg_class WHERE relnamespace = 'webhooks'::regnamespace
                                AND oid NOT IN (SELECT ('webhooks.' || quote_ident(name))::regclass FROM webhooks.partition)))",
    // Roles the extension creates, and what they are members of.
    "SELECT format('role %s super=%s login=%s member-of=%s', r.rolname, r.rolsuper, r.rolcanlogin,
                   (SELECT string_agg(g.rolname, ',' ORDER BY g.rolname) FROM pg_auth_members m
                      JOIN pg_roles g ON g.oid = m.roleid WHERE m.member = r.oid))
       FROM pg_roles r WHERE r.rolname LIKE 'webhooks\\_%'",
];

/// The dump, sorted.
pub async fn catalog_dump(db: &Client) -> Vec<String> {
    let mut lines = Vec::new();
    for q in QUERIES {
        let rows = db
            .query(*q, &[])
            .await
            .unwrap_or_else(|e| panic!("{q}: {}", crate::cluster::db_message(&e)));
        lines.extend(rows.iter().filter_map(|r| r.get::<_, Option<String>>(0)));
    }
    lines.sort();
    lines
}

/// Lines only in `a` ("- ") or only in `b` ("+ ").
pub fn diff(a: &[String], b: &[String]) -> Vec<String> {
    let (sa, sb): (std::collections::BTreeSet<&String>, std::collections::BTreeSet<&String>) =
        (a.iter().collect(), b.iter().collect());
    let mut out: Vec<String> = sa.difference(&sb).map(|l| format!("- {l}")).collect();
    out.extend(sb.difference(&sa).map(|l| format!("+ {l}")));
    out
}

/// The privilege decisions of every object pg_webhooks has in a database:
/// owner, ACL, SECURITY DEFINER and pinned settings of each function,
/// table, view, sequence and trigger in schema webhooks and on tracked
/// tables. The extension's owner reads as `<owner>`; dated partitions as
/// `<period>` (one line per kind).
pub async fn privileges_dump(db: &Client) -> Vec<String> {
    const QUERIES: &[&str] = &[
        "SELECT 'schema webhooks owner=' || pg_get_userbyid(n.nspowner) || ' acl=' || coalesce(n.nspacl::text, '')
           FROM pg_namespace n WHERE n.nspname = 'webhooks'",
        "SELECT format('%s %s owner=%s acl=%s', CASE c.relkind WHEN 'r' THEN 'table' WHEN 'p' THEN 'table'
                                                 WHEN 'v' THEN 'view' WHEN 'S' THEN 'sequence' END,
                       c.oid::regclass, pg_get_userbyid(c.relowner),
                       -- The owner's own grant of everything reads ALL: PostgreSQL 17
                       -- added MAINTAIN (m), which 15 does not have.
                       (SELECT string_agg(regexp_replace(a::text, '^([^=]*)=arwdDxtm?/\\1$', '\\1=ALL/\\1'), ','
                                          ORDER BY a::text) FROM unnest(c.relacl) a))
           FROM pg_class c WHERE c.relnamespace = 'webhooks'::regnamespace AND c.relkind IN ('r', 'p', 'v', 'S')",
        "SELECT format('function %s owner=%s acl=%s security-definer=%s config=%s', p.oid::regprocedure,
                       pg_get_userbyid(p.proowner),
                       (SELECT string_agg(a::text, ',' ORDER BY a::text) FROM unnest(p.proacl) a),
                       p.prosecdef, p.proconfig)
           FROM pg_proc p WHERE p.pronamespace = 'webhooks'::regnamespace",
        "SELECT format('trigger %s on %s function=%s', t.tgname, t.tgrelid::regclass, t.tgfoid::regprocedure)
           FROM pg_trigger t
          WHERE NOT t.tgisinternal
            AND t.tgfoid IN (SELECT oid FROM pg_proc WHERE pronamespace = 'webhooks'::regnamespace)",
        "SELECT format('event-trigger %s function=%s owner=%s', e.evtname, e.evtfoid::regprocedure,
                       pg_get_userbyid(e.evtowner))
           FROM pg_event_trigger e
          WHERE e.evtfoid IN (SELECT oid FROM pg_proc WHERE pronamespace = 'webhooks'::regnamespace)",
    ];
    let owner: String = db
        .query_one(
            "SELECT pg_get_userbyid(extowner)::text FROM pg_extension WHERE extname = 'pg_webhooks'",
            &[],
        )
        .await
        .expect("extension owner")
        .get(0);
    let mut lines = std::collections::BTreeSet::new();
    for q in QUERIES {
        let rows = db
            .query(*q, &[])
            .await
            .unwrap_or_else(|e| panic!("{q}: {}", crate::cluster::db_message(&e)));
        for line in rows.iter().filter_map(|r| r.get::<_, Option<String>>(0)) {
            lines.insert(normalise(&line, &owner));
        }
    }
    lines.into_iter().collect()
}

/// `<owner>` for the extension's owner (in ACLs too), `<period>` for the
/// date part of a partition's name.
fn normalise(line: &str, owner: &str) -> String {
    let mut out = String::with_capacity(line.len());
    for word in line.split_inclusive(|c: char| !(c.is_alphanumeric() || c == '_')) {
        let (body, end) = match word.char_indices().last() {
            Some((i, c)) if !(c.is_alphanumeric() || c == '_') => (&word[..i], &word[i..]),
            _ => (word, ""),
        };
        let body = if body == owner {
            "<owner>".to_owned()
        } else if let Some((base, date)) = ["event_", "attempt_"]
            .iter()
            .find_map(|p| body.strip_prefix(p).map(|rest| (&p[..p.len() - 1], rest)))
            .filter(|(_, date)| date.len() >= 8 && date.bytes().all(|c| c.is_ascii_digit() || c == b'_'))
        {
            let _ = date;
            format!("{base}_<period>")
        } else {
            body.to_owned()
        };
        out.push_str(&body);
        out.push_str(end);
    }
    out
}
