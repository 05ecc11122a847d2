//! Schema fingerprints: an introspection of everything a migration can change, and a readable
//! diff between two of them.
//!
//! A [`Fingerprint`] maps a key naming one object (`column public.users.email`,
//! `index public.idx_users_email`, `comment on table public.users`, ...) to its definition as
//! the server itself prints it (`format_type`, `pg_get_constraintdef`, `pg_get_indexdef`,
//! `pg_get_viewdef`, `pg_get_functiondef`, `pg_get_triggerdef`, ...). What differs between
//! healthy databases is left out: OIDs, owners, privileges, statistics, sequence positions, and
//! the migration bookkeeping (`refinery_schema_history`, `ecomind_migration_events` and
//! everything that belongs to them). Objects that belong to an extension are represented by
//! the extension alone.
//!
//! Names in the home schema (the first schema of the search path, where unqualified DDL
//! creates objects) are printed unqualified, names elsewhere qualified, so two databases
//! compare equal exactly when their DDL would be the same.

use std::collections::BTreeMap;
use std::fmt;

use postgres::{Client, GenericClient};
use serde::Serialize;

use crate::history::{EVENT_TABLE, HISTORY_TABLE};
use crate::Error;

/// Every object of a database's schema, by key, with its definition; ordered by key.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Fingerprint {
    objects: BTreeMap<String, String>,
}

impl Fingerprint {
    /// The objects: key (`kind schema.name`) to definition, ordered by key.
    pub fn objects(&self) -> &BTreeMap<String, String> {
        &self.objects
    }

    /// The definition of one object.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.objects.get(key).map(String::as_str)
    }

    /// How many objects there are.
    pub fn len(&self) -> usize {
        self.objects.len()
    }

    /// True when the schema has no object at all.
    pub fn is_empty(&self) -> bool {
        self.objects.is_empty()
    }

    fn insert(&mut self, key: String, definition: String) {
        self.objects.insert(key, definition);
    }

    fn comment(&mut self, key: &str, comment: Option<String>) {
        if let Some(text) = comment {
            self.objects.insert(format!("comment on {key}"), text);
        }
    }

    /// The same fingerprint with every mention of schema `from` read as schema `to`.
    fn renamed(self, from: &str, to: &str) -> Fingerprint {
        let rename = |s: String| s.replace(from, to);
        Fingerprint {
            objects: self
                .objects
                .into_iter()
                .map(|(k, v)| (rename(k), rename(v)))
                .collect(),
        }
    }
}

/// One object per line: `key: definition`.
impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (key, definition) in &self.objects {
            writeln!(f, "{key}: {definition}")?;
        }
        Ok(())
    }
}

/// One way two fingerprints differ.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Difference {
    /// Expected but absent.
    Missing {
        /// The object.
        key: String,
        /// Its expected definition.
        expected: String,
    },
    /// Present but not expected.
    Extra {
        /// The object.
        key: String,
        /// Its actual definition.
        actual: String,
    },
    /// Present with another definition.
    Changed {
        /// The object.
        key: String,
        /// The expected definition.
        expected: String,
        /// The actual definition.
        actual: String,
    },
}

impl Difference {
    /// The object that differs.
    pub fn key(&self) -> &str {
        match self {
            Difference::Missing { key, .. }
            | Difference::Extra { key, .. }
            | Difference::Changed { key, .. } => key,
        }
    }
}

impl fmt::Display for Difference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Difference::Missing { key, expected } => {
                write!(f, "missing {key}\n    expected: {}", indent(expected))
            }
            Difference::Extra { key, actual } => {
                write!(f, "extra {key}\n    actual:   {}", indent(actual))
            }
            Difference::Changed {
                key,
                expected,
                actual,
            } => write!(
                f,
                "changed {key}\n    expected: {}\n    actual:   {}",
                indent(expected),
                indent(actual)
            ),
        }
    }
}

/// Continues a multi-line definition (a function body) under its label.
fn indent(text: &str) -> String {
    text.trim_end().replace('\n', "\n              ")
}

/// Renders differences one after another, as the cli and the tests show them.
pub fn describe(differences: &[Difference]) -> String {
    differences
        .iter()
        .map(|d| d.to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

/// Compares two fingerprints: what `actual` lacks, has in excess, or defines differently,
/// ordered by key.
pub fn diff(expected: &Fingerprint, actual: &Fingerprint) -> Vec<Difference> {
    let mut out = Vec::new();
    let mut exp = expected.objects.iter().peekable();
    let mut act = actual.objects.iter().peekable();
    loop {
        match (exp.peek(), act.peek()) {
            (None, None) => break,
            (Some((ek, ev)), Some((ak, av))) if ek == ak => {
                if ev != av {
                    out.push(Difference::Changed {
                        key: (*ek).clone(),
                        expected: (*ev).clone(),
                        actual: (*av).clone(),
                    });
                }
                exp.next();
                act.next();
            }
            (Some((ek, ev)), Some((ak, _))) if ek < ak => {
                out.push(Difference::Missing {
                    key: (*ek).clone(),
                    expected: (*ev).clone(),
                });
                exp.next();
            }
            (Some((ek, ev)), None) => {
                out.push(Difference::Missing {
                    key: (*ek).clone(),
                    expected: (*ev).clone(),
                });
                exp.next();
            }
            (_, Some((ak, av))) => {
                out.push(Difference::Extra {
                    key: (*ak).clone(),
                    actual: (*av).clone(),
                });
                act.next();
            }
        }
    }
    out
}

/// Fingerprints the whole database (every schema but the system ones), in one read-only
/// transaction so the picture is consistent.
pub fn fingerprint(client: &mut Client) -> Result<Fingerprint, Error> {
    let mut tx = client
        .build_transaction()
        .read_only(true)
        .start()
        .map_err(Error::db("cannot begin the fingerprint transaction"))?;
    let home = home_schema(&mut tx)?;
    set_local_search_path(&mut tx, home.as_deref())?;
    let found = collect(&mut tx, None)?;
    tx.commit()
        .map_err(Error::db("cannot end the fingerprint transaction"))?;
    Ok(found)
}

/// The schema unqualified DDL creates objects in: the first existing schema of the search path.
pub(crate) fn home_schema(conn: &mut impl GenericClient) -> Result<Option<String>, Error> {
    conn.query_one("SELECT current_schema()::text", &[])
        .map(|r| r.get(0))
        .map_err(Error::db("cannot read the current schema"))
}

/// Sets the search path of the current transaction to `schema` alone (or to nothing), which
/// decides what the server's `pg_get_*def` functions print unqualified.
pub(crate) fn set_local_search_path(
    conn: &mut impl GenericClient,
    schema: Option<&str>,
) -> Result<(), Error> {
    let path = schema.map_or_else(|| "''".to_owned(), crate::quote::ident);
    conn.batch_execute(&format!("SET LOCAL search_path = {path}"))
        .map_err(Error::db("cannot set the search path"))
}

/// Fingerprints one schema (`scratch`), reading every mention of it as `home`: how the
/// expected schema, built in a scratch schema, is compared with the live one. Extensions are
/// read database-wide. The caller has set the search path to `scratch`.
pub(crate) fn collect_schema_as(
    conn: &mut impl GenericClient,
    scratch: &str,
    home: &str,
) -> Result<Fingerprint, Error> {
    Ok(collect(conn, Some(scratch))?.renamed(scratch, home))
}

/// Fingerprints one schema under its own name, with extensions database-wide.
pub(crate) fn collect_schema(
    conn: &mut impl GenericClient,
    schema: &str,
) -> Result<Fingerprint, Error> {
    collect(conn, Some(schema))
}

/// Schemas that hold no user objects.
const SYSTEM_SCHEMAS: &str = "n.nspname NOT IN ('pg_catalog', 'information_schema') \
     AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp\\_%'";

/// Reads the catalog. `only` limits it to one schema (and then leaves out that schema's own
/// entry and comment, which belong to whoever created the schema, not to the migrations).
fn collect(conn: &mut impl GenericClient, only: Option<&str>) -> Result<Fingerprint, Error> {
    let mut fp = Fingerprint::default();
    let ctx = Query {
        only: only.map(str::to_owned),
    };
    if only.is_none() {
        schemas(conn, &ctx, &mut fp)?;
    }
    relations(conn, &ctx, &mut fp)?;
    columns(conn, &ctx, &mut fp)?;
    constraints(conn, &ctx, &mut fp)?;
    indexes(conn, &ctx, &mut fp)?;
    sequences(conn, &ctx, &mut fp)?;
    types(conn, &ctx, &mut fp)?;
    functions(conn, &ctx, &mut fp)?;
    triggers(conn, &ctx, &mut fp)?;
    policies_and_rules(conn, &ctx, &mut fp)?;
    extensions(conn, &mut fp)?;
    Ok(fp)
}

struct Query {
    only: Option<String>,
}

impl Query {
    /// Runs a catalog query whose `$1` is the schema filter (NULL for every schema).
    fn rows(
        &self,
        conn: &mut impl GenericClient,
        what: &str,
        sql: &str,
    ) -> Result<Vec<postgres::Row>, Error> {
        let sql = sql
            .replace("{system}", SYSTEM_SCHEMAS)
            .replace("{bookkeeping}", &bookkeeping());
        conn.query(&sql, &[&self.only])
            .map_err(Error::db(format!("cannot read the {what} of the schema")))
    }
}

/// The oids of the migration bookkeeping tables, as a subquery.
fn bookkeeping() -> String {
    format!(
        "(SELECT oid FROM pg_class WHERE relkind = 'r' AND relname IN ('{HISTORY_TABLE}', '{EVENT_TABLE}'))"
    )
}

/// `n` is in scope: not a system schema, and the schema asked for if any.
const IN_SCOPE: &str = "{system} AND ($1::text IS NULL OR n.nspname = $1::text)";

/// True when the object (class, oid) belongs to an extension.
fn extension_member(class: &str, oid: &str) -> String {
    format!(
        "EXISTS (SELECT 1 FROM pg_depend e WHERE e.classid = '{class}'::regclass AND e.objid = {oid} AND e.deptype = 'e')"
    )
}

fn schemas(conn: &mut impl GenericClient, q: &Query, fp: &mut Fingerprint) -> Result<(), Error> {
    let sql = format!(
        "SELECT n.nspname::text, obj_description(n.oid, 'pg_namespace') \
         FROM pg_namespace n WHERE {IN_SCOPE} AND NOT {}",
        extension_member("pg_namespace", "n.oid")
    );
    for r in q.rows(conn, "schemas", &sql)? {
        let key = format!("schema {}", r.get::<_, String>(0));
        fp.insert(key.clone(), "schema".to_owned());
        fp.comment(&key, r.get(1));
    }
    Ok(())
}

fn relation_kind(relkind: &str) -> &'static str {
    match relkind {
        "r" => "table",
        "p" => "partitioned table",
        "f" => "foreign table",
        "v" => "view",
        "m" => "materialized view",
        "c" => "composite type",
        _ => "relation",
    }
}

fn relations(conn: &mut impl GenericClient, q: &Query, fp: &mut Fingerprint) -> Result<(), Error> {
    let sql = format!(
        "SELECT n.nspname::text, c.relname::text, c.relkind::text, c.relpersistence::text, \
                array_to_string(c.reloptions, ', '), c.relrowsecurity, c.relforcerowsecurity, \
                CASE WHEN c.relkind = 'p' THEN pg_get_partkeydef(c.oid) END, \
                CASE WHEN c.relispartition THEN pg_get_expr(c.relpartbound, c.oid) END, \
                (SELECT string_agg(quote_ident(a.attname), ', ' ORDER BY a.attnum) FROM pg_attribute a \
                  WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped), \
                (SELECT string_agg(i.inhparent::regclass::text, ', ' ORDER BY i.inhseqno) FROM pg_inherits i \
                  WHERE i.inhrelid = c.oid), \
                CASE WHEN c.relkind IN ('v', 'm') THEN pg_get_viewdef(c.oid, true) END, \
                obj_description(c.oid, 'pg_class') \
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE c.relkind IN ('r', 'p', 'f', 'v', 'm') AND {IN_SCOPE} \
           AND c.oid NOT IN {{bookkeeping}} AND NOT {}",
        extension_member("pg_class", "c.oid")
    );
    for r in q.rows(conn, "tables and views", &sql)? {
        let (schema, name, relkind): (String, String, String) = (r.get(0), r.get(1), r.get(2));
        let kind = relation_kind(&relkind);
        let mut def = String::new();
        if r.get::<_, String>(3) == "u" {
            def.push_str("unlogged ");
        }
        def.push_str(kind);
        def.push_str(&format!(
            " ({})",
            r.get::<_, Option<String>>(9).unwrap_or_default()
        ));
        if let Some(parents) = r.get::<_, Option<String>>(10) {
            if r.get::<_, Option<String>>(8).is_some() {
                def.push_str(&format!(" partition of {parents}"));
            } else {
                def.push_str(&format!(" inherits ({parents})"));
            }
        }
        if let Some(bound) = r.get::<_, Option<String>>(8) {
            def.push_str(&format!(" {bound}"));
        }
        if let Some(key) = r.get::<_, Option<String>>(7) {
            def.push_str(&format!(" partition by {key}"));
        }
        if let Some(options) = r.get::<_, Option<String>>(4).filter(|o| !o.is_empty()) {
            def.push_str(&format!(" with ({options})"));
        }
        if r.get::<_, bool>(5) {
            def.push_str(" row level security");
        }
        if r.get::<_, bool>(6) {
            def.push_str(" forced");
        }
        if let Some(view) = r.get::<_, Option<String>>(11) {
            def.push_str(" as\n");
            def.push_str(view.trim());
        }
        let key = format!("{kind} {schema}.{name}");
        fp.insert(key.clone(), def);
        fp.comment(&key, r.get(12));
    }
    Ok(())
}

fn columns(conn: &mut impl GenericClient, q: &Query, fp: &mut Fingerprint) -> Result<(), Error> {
    let sql = format!(
        "SELECT n.nspname::text, c.relname::text, a.attname::text, format_type(a.atttypid, a.atttypmod), \
                a.attnotnull, a.attidentity::text, a.attgenerated::text, pg_get_expr(d.adbin, d.adrelid), \
                CASE WHEN a.attcollation <> t.typcollation THEN \
                  (SELECT CASE WHEN cn.nspname = 'pg_catalog' THEN quote_ident(co.collname) \
                          ELSE quote_ident(cn.nspname) || '.' || quote_ident(co.collname) END \
                   FROM pg_collation co JOIN pg_namespace cn ON cn.oid = co.collnamespace \
                   WHERE co.oid = a.attcollation) END, \
                col_description(c.oid, a.attnum) \
         FROM pg_attribute a \
         JOIN pg_class c ON c.oid = a.attrelid \
         JOIN pg_namespace n ON n.oid = c.relnamespace \
         JOIN pg_type t ON t.oid = a.atttypid \
         LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum \
         WHERE a.attnum > 0 AND NOT a.attisdropped AND c.relkind IN ('r', 'p', 'f', 'v', 'm') \
           AND {IN_SCOPE} AND c.oid NOT IN {{bookkeeping}} AND NOT {}",
        extension_member("pg_class", "c.oid")
    );
    for r in q.rows(conn, "columns", &sql)? {
        let (schema, table, column, ty): (String, String, String, String) =
            (r.get(0), r.get(1), r.get(2), r.get(3));
        let mut def = ty;
        if let Some(collation) = r.get::<_, Option<String>>(8) {
            def.push_str(&format!(" collate {collation}"));
        }
        if r.get::<_, bool>(4) {
            def.push_str(" not null");
        }
        let expr: Option<String> = r.get(7);
        match (r.get::<_, String>(6).as_str(), expr) {
            ("s", Some(e)) => def.push_str(&format!(" generated always as ({e}) stored")),
            ("v", Some(e)) => def.push_str(&format!(" generated always as ({e}) virtual")),
            (_, Some(e)) => def.push_str(&format!(" default {e}")),
            (_, None) => {}
        }
        match r.get::<_, String>(5).as_str() {
            "a" => def.push_str(" generated always as identity"),
            "d" => def.push_str(" generated by default as identity"),
            _ => {}
        }
        let key = format!("column {schema}.{table}.{column}");
        fp.insert(key.clone(), def);
        fp.comment(&key, r.get(9));
    }
    Ok(())
}

fn constraints(
    conn: &mut impl GenericClient,
    q: &Query,
    fp: &mut Fingerprint,
) -> Result<(), Error> {
    let sql = format!(
        "SELECT n.nspname::text, c.relname::text, k.conname::text, pg_get_constraintdef(k.oid), \
                obj_description(k.oid, 'pg_constraint') \
         FROM pg_constraint k \
         JOIN pg_class c ON c.oid = k.conrelid \
         JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE {IN_SCOPE} AND c.oid NOT IN {{bookkeeping}} AND NOT {}",
        extension_member("pg_class", "c.oid")
    );
    for r in q.rows(conn, "constraints", &sql)? {
        let key = format!(
            "constraint {}.{}.{}",
            r.get::<_, String>(0),
            r.get::<_, String>(1),
            r.get::<_, String>(2)
        );
        fp.insert(key.clone(), r.get(3));
        fp.comment(&key, r.get(4));
    }
    Ok(())
}

fn indexes(conn: &mut impl GenericClient, q: &Query, fp: &mut Fingerprint) -> Result<(), Error> {
    let sql = format!(
        "SELECT n.nspname::text, i.relname::text, pg_get_indexdef(i.oid), x.indisvalid, \
                obj_description(i.oid, 'pg_class') \
         FROM pg_index x \
         JOIN pg_class i ON i.oid = x.indexrelid \
         JOIN pg_namespace n ON n.oid = i.relnamespace \
         WHERE {IN_SCOPE} AND x.indrelid NOT IN {{bookkeeping}} AND NOT {} AND NOT {}",
        extension_member("pg_class", "i.oid"),
        extension_member("pg_class", "x.indrelid")
    );
    for r in q.rows(conn, "indexes", &sql)? {
        let key = format!("index {}.{}", r.get::<_, String>(0), r.get::<_, String>(1));
        let mut def: String = r.get(2);
        if !r.get::<_, bool>(3) {
            def.push_str(" (INVALID: an interrupted CREATE INDEX CONCURRENTLY left it)");
        }
        fp.insert(key.clone(), def);
        fp.comment(&key, r.get(4));
    }
    Ok(())
}

fn sequences(conn: &mut impl GenericClient, q: &Query, fp: &mut Fingerprint) -> Result<(), Error> {
    let sql = format!(
        "SELECT n.nspname::text, c.relname::text, \
                format('as %s start %s increment %s minvalue %s maxvalue %s cache %s%s', \
                       format_type(s.seqtypid, NULL), s.seqstart, s.seqincrement, s.seqmin, s.seqmax, \
                       s.seqcache, CASE WHEN s.seqcycle THEN ' cycle' ELSE '' END), \
                c.relpersistence::text, \
                (SELECT CASE d.deptype WHEN 'i' THEN 'identity of ' ELSE 'owned by ' END \
                        || quote_ident(tn.nspname) || '.' || quote_ident(t.relname) || '.' || quote_ident(a.attname) \
                 FROM pg_depend d \
                 JOIN pg_class t ON t.oid = d.refobjid \
                 JOIN pg_namespace tn ON tn.oid = t.relnamespace \
                 JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid \
                 WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid \
                   AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i') \
                 ORDER BY 1 LIMIT 1), \
                obj_description(c.oid, 'pg_class') \
         FROM pg_sequence s \
         JOIN pg_class c ON c.oid = s.seqrelid \
         JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE {IN_SCOPE} AND NOT {} \
           AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass \
                           AND d.objid = c.oid AND d.refobjid IN {{bookkeeping}})",
        extension_member("pg_class", "c.oid")
    );
    for r in q.rows(conn, "sequences", &sql)? {
        let key = format!(
            "sequence {}.{}",
            r.get::<_, String>(0),
            r.get::<_, String>(1)
        );
        let mut def = String::new();
        if r.get::<_, String>(3) == "u" {
            def.push_str("unlogged ");
        }
        def.push_str(&r.get::<_, String>(2));
        if let Some(owner) = r.get::<_, Option<String>>(4) {
            def.push(' ');
            def.push_str(&owner);
        }
        fp.insert(key.clone(), def);
        fp.comment(&key, r.get(5));
    }
    Ok(())
}

fn types(conn: &mut impl GenericClient, q: &Query, fp: &mut Fingerprint) -> Result<(), Error> {
    let sql = format!(
        "SELECT n.nspname::text, t.typname::text, t.typtype::text, \
                CASE t.typtype \
                  WHEN 'e' THEN 'enum (' || coalesce((SELECT string_agg(quote_literal(e.enumlabel), ', ' ORDER BY e.enumsortorder) \
                                  FROM pg_enum e WHERE e.enumtypid = t.oid), '') || ')' \
                  WHEN 'd' THEN 'domain ' || format_type(t.typbasetype, t.typtypmod) \
                                || CASE WHEN t.typnotnull THEN ' not null' ELSE '' END \
                                || coalesce(' default ' || t.typdefault, '') \
                                || coalesce((SELECT string_agg(' constraint ' || quote_ident(k.conname) || ' ' || pg_get_constraintdef(k.oid), '' ORDER BY k.conname) \
                                             FROM pg_constraint k WHERE k.contypid = t.oid), '') \
                  WHEN 'c' THEN 'composite (' || coalesce((SELECT string_agg(quote_ident(a.attname) || ' ' || format_type(a.atttypid, a.atttypmod), ', ' ORDER BY a.attnum) \
                                  FROM pg_attribute a WHERE a.attrelid = t.typrelid AND a.attnum > 0 AND NOT a.attisdropped), '') || ')' \
                  WHEN 'r' THEN 'range of ' || (SELECT format_type(r.rngsubtype, NULL) FROM pg_range r WHERE r.rngtypid = t.oid) \
                  ELSE 'base type' \
                END, \
                obj_description(t.oid, 'pg_type') \
         FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace \
         WHERE t.typtype IN ('e', 'd', 'c', 'r', 'b') AND {IN_SCOPE} AND NOT {} \
           AND (t.typtype <> 'c' OR (SELECT relkind FROM pg_class WHERE oid = t.typrelid) = 'c') \
           AND NOT (t.typtype = 'b' AND t.typelem <> 0 AND t.typlen = -1 \
                    AND EXISTS (SELECT 1 FROM pg_type el WHERE el.oid = t.typelem AND el.typarray = t.oid))",
        extension_member("pg_type", "t.oid")
    );
    for r in q.rows(conn, "types", &sql)? {
        let key = format!("type {}.{}", r.get::<_, String>(0), r.get::<_, String>(1));
        fp.insert(key.clone(), r.get(3));
        fp.comment(&key, r.get(4));
    }
    Ok(())
}

fn functions(conn: &mut impl GenericClient, q: &Query, fp: &mut Fingerprint) -> Result<(), Error> {
    let sql = format!(
        "SELECT n.nspname::text, p.proname::text, pg_get_function_identity_arguments(p.oid), p.prokind::text, \
                CASE WHEN p.prokind = 'a' THEN \
                  (SELECT format('aggregate sfunc %s stype %s finalfunc %s combinefunc %s initcond %s', \
                                 a.aggtransfn::regproc, format_type(a.aggtranstype, NULL), a.aggfinalfn::regproc, \
                                 a.aggcombinefn::regproc, coalesce(a.agginitval, 'none')) \
                   FROM pg_aggregate a WHERE a.aggfnoid = p.oid) \
                ELSE pg_get_functiondef(p.oid) END, \
                obj_description(p.oid, 'pg_proc') \
         FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace \
         WHERE {IN_SCOPE} AND NOT {}",
        extension_member("pg_proc", "p.oid")
    );
    for r in q.rows(conn, "functions", &sql)? {
        let kind = match r.get::<_, String>(3).as_str() {
            "p" => "procedure",
            "a" => "aggregate",
            _ => "function",
        };
        let key = format!(
            "{kind} {}.{}({})",
            r.get::<_, String>(0),
            r.get::<_, String>(1),
            r.get::<_, String>(2)
        );
        fp.insert(key.clone(), r.get::<_, String>(4).trim().to_owned());
        fp.comment(&key, r.get(5));
    }
    Ok(())
}

fn triggers(conn: &mut impl GenericClient, q: &Query, fp: &mut Fingerprint) -> Result<(), Error> {
    let sql = format!(
        "SELECT n.nspname::text, c.relname::text, g.tgname::text, pg_get_triggerdef(g.oid), g.tgenabled::text, \
                obj_description(g.oid, 'pg_trigger') \
         FROM pg_trigger g \
         JOIN pg_class c ON c.oid = g.tgrelid \
         JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE NOT g.tgisinternal AND {IN_SCOPE} AND c.oid NOT IN {{bookkeeping}} AND NOT {}",
        extension_member("pg_class", "c.oid")
    );
    for r in q.rows(conn, "triggers", &sql)? {
        let key = format!(
            "trigger {}.{}.{}",
            r.get::<_, String>(0),
            r.get::<_, String>(1),
            r.get::<_, String>(2)
        );
        let mut def: String = r.get(3);
        match r.get::<_, String>(4).as_str() {
            "D" => def.push_str(" (disabled)"),
            "R" => def.push_str(" (enabled on replica only)"),
            "A" => def.push_str(" (enabled always)"),
            _ => {}
        }
        fp.insert(key.clone(), def);
        fp.comment(&key, r.get(5));
    }
    Ok(())
}

fn policies_and_rules(
    conn: &mut impl GenericClient,
    q: &Query,
    fp: &mut Fingerprint,
) -> Result<(), Error> {
    let sql = "SELECT n.nspname::text, p.tablename::text, p.policyname::text, \
                format('%s for %s to %s using (%s) with check (%s)', p.permissive, p.cmd, \
                       array_to_string(p.roles, ', '), coalesce(p.qual, ''), coalesce(p.with_check, '')) \
         FROM pg_policies p JOIN pg_namespace n ON n.nspname = p.schemaname \
         WHERE {IN_SCOPE}";
    for r in q.rows(conn, "policies", &sql.replace("{IN_SCOPE}", IN_SCOPE))? {
        let key = format!(
            "policy {}.{}.{}",
            r.get::<_, String>(0),
            r.get::<_, String>(1),
            r.get::<_, String>(2)
        );
        fp.insert(key, r.get(3));
    }
    let sql = "SELECT n.nspname::text, r.tablename::text, r.rulename::text, r.definition \
         FROM pg_rules r JOIN pg_namespace n ON n.nspname = r.schemaname \
         WHERE {IN_SCOPE}";
    for r in q.rows(conn, "rules", &sql.replace("{IN_SCOPE}", IN_SCOPE))? {
        let key = format!(
            "rule {}.{}.{}",
            r.get::<_, String>(0),
            r.get::<_, String>(1),
            r.get::<_, String>(2)
        );
        fp.insert(key, r.get(3));
    }
    Ok(())
}

fn extensions(conn: &mut impl GenericClient, fp: &mut Fingerprint) -> Result<(), Error> {
    let rows = conn
        .query(
            "SELECT e.extname::text, e.extversion, n.nspname::text, obj_description(e.oid, 'pg_extension') \
             FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace",
            &[],
        )
        .map_err(Error::db("cannot read the extensions of the database"))?;
    for r in rows {
        let key = format!("extension {}", r.get::<_, String>(0));
        fp.insert(
            key.clone(),
            format!(
                "version {} in schema {}",
                r.get::<_, String>(1),
                r.get::<_, String>(2)
            ),
        );
        fp.comment(&key, r.get(3));
    }
    Ok(())
}
