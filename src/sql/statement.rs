//! The misql statement AST. Every statement prints back as SQL (`Display`) that parses to the
//! same statement, so statements round-trip and snapshot well.

use std::fmt;

use sqlparser::ast::{Expr, Ident, ObjectName, SelectItem};

use super::maintenance::{Optimize, Vacuum};
use super::option_value::quote_string;
use super::options::SyncOptions;

/// One statement: misql's own, or any other SQL that sqlparser understands.
// Statements are parsed once and moved rarely; boxing the sync would only add noise for users.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Statement {
    /// `ATTACH 'uri' AS name (TYPE mongodb | iceberg [, key 'value' ...])`
    Attach(Attach),
    /// `CREATE [OR REPLACE] SYNC [IF NOT EXISTS] name FROM src INTO dst ...`
    CreateSync(CreateSync),
    /// `DROP SYNC [IF EXISTS] name [PURGE]`
    DropSync {
        /// The sync to drop.
        name: Ident,
        /// `PURGE`: also drop the target table.
        purge: bool,
        /// `IF EXISTS`: no error when there is no such sync.
        if_exists: bool,
    },
    /// `START SYNC name`
    StartSync {
        /// The sync to start.
        name: Ident,
    },
    /// `STOP SYNC name`
    StopSync {
        /// The sync to stop.
        name: Ident,
    },
    /// `CHECK SYNC name`: compare the sync's table with its collection.
    CheckSync {
        /// The sync to check.
        name: Ident,
    },
    /// `REFRESH SYNC name`: copy the collection again under the running sync's stream,
    /// repairing whatever differs.
    RefreshSync {
        /// The sync to refresh.
        name: Ident,
    },
    /// `SHOW SYNCS`
    ShowSyncs,
    /// `SHOW SYNC STATUS [name]`
    ShowSyncStatus {
        /// One sync, or all of them when `None`.
        name: Option<Ident>,
    },
    /// `EXPLAIN SYNC name` or `EXPLAIN CREATE [OR REPLACE] SYNC ...`
    ExplainSync(ExplainSync),
    /// `OPTIMIZE {catalog.namespace.table | SYNC name} [WITH (...)]`
    Optimize(Optimize),
    /// `VACUUM {catalog.namespace.table | SYNC name} [RETAIN 'duration']`
    Vacuum(Vacuum),
    /// `SHOW DATABASES [FROM catalog]`
    ShowDatabases {
        /// The attached MongoDB catalog, or all of them when `None`.
        from: Option<Ident>,
    },
    /// `SHOW COLLECTIONS [FROM catalog.db]`
    ShowCollections {
        /// Where to list collections, or everywhere when `None`.
        from: Option<ObjectName>,
    },
    /// `SHOW TABLES [FROM catalog.namespace]`
    ShowTables {
        /// Where to list tables, or everywhere when `None`.
        from: Option<ObjectName>,
    },
    /// `DESCRIBE name` or `DESC name`
    Describe {
        /// The collection or table to describe.
        name: ObjectName,
    },
    /// Any other statement (`SELECT`, `EXPLAIN SELECT`, `SET`, ...), as sqlparser parsed it.
    Sql(Box<sqlparser::ast::Statement>),
}

/// `ATTACH 'uri' AS name (TYPE kind [, key 'value' ...])`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attach {
    /// The connection string or warehouse path, after `${ENV}` substitution.
    pub uri: String,
    /// The name the catalog is known by in SQL.
    pub name: Ident,
    /// What is attached.
    pub kind: AttachKind,
    /// The options after `TYPE`, keys lower-cased, in the order given.
    pub options: Vec<(String, String)>,
}

/// What an `ATTACH` registers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttachKind {
    /// A MongoDB deployment.
    Mongodb,
    /// An Iceberg catalog.
    Iceberg,
}

impl AttachKind {
    /// The name written after `TYPE`.
    pub fn name(self) -> &'static str {
        match self {
            AttachKind::Mongodb => "mongodb",
            AttachKind::Iceberg => "iceberg",
        }
    }
}

/// `CREATE [OR REPLACE] SYNC [IF NOT EXISTS] name FROM src INTO dst [SELECT ...] [WHERE ...]
/// [PARTITION BY ...] [WITH (...)]`
#[derive(Debug, Clone, PartialEq)]
pub struct CreateSync {
    /// `OR REPLACE`: replace a sync of the same name.
    pub or_replace: bool,
    /// `IF NOT EXISTS`: do nothing when a sync of that name exists.
    pub if_not_exists: bool,
    /// The sync's name.
    pub name: Ident,
    /// `catalog.database.collection`: three parts; for a database sync (`collections` given),
    /// `catalog.database`.
    pub source: ObjectName,
    /// `catalog.namespace.table`: three parts; for a database sync, `catalog.namespace`.
    pub target: ObjectName,
    /// A database sync: which collections of the source database it takes.
    pub collections: Option<CollectionPattern>,
    /// The `SELECT` list; `None` means `SELECT *` with schema evolution.
    pub projection: Option<Vec<SelectItem>>,
    /// The `SELECT` list as the user wrote it, for `SHOW` and `EXPLAIN`.
    pub projection_text: Option<String>,
    /// The `WHERE` filter.
    pub selection: Option<Expr>,
    /// The Iceberg partition spec, in order.
    pub partition_by: Vec<PartitionField>,
    /// The `WITH (...)` options, with defaults for those not given.
    pub options: SyncOptions,
}

/// The collections a database sync takes: `mongo.shop.*`, `mongo.shop.orders_*`, with
/// `EXCLUDE (name or glob, ...)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CollectionPattern {
    /// The glob on collection names (`*` matches any run of characters).
    pub glob: String,
    /// Names or globs left out.
    pub exclude: Vec<String>,
}

impl CollectionPattern {
    /// Whether the sync takes the collection `name`.
    pub fn takes(&self, name: &str) -> bool {
        glob_matches(&self.glob, name) && !self.exclude.iter().any(|e| glob_matches(e, name))
    }
}

/// A collection name or glob as written in EXCLUDE: bare when it can be, else quoted.
fn name_or_glob(name: &str) -> String {
    let bare = !name.is_empty()
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '*')
        && !name.starts_with(|c: char| c.is_ascii_digit());
    if bare { name.to_string() } else { format!("'{}'", name.replace('\'', "''")) }
}

/// Whether `name` matches `glob`, where `*` stands for any run of characters.
pub fn glob_matches(glob: &str, name: &str) -> bool {
    let parts: Vec<&str> = glob.split('*').collect();
    if parts.len() == 1 {
        return glob == name;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !name.starts_with(first) || !name[first.len()..].ends_with(last) {
        return false;
    }
    let mut rest = &name[first.len()..name.len() - last.len()];
    for middle in &parts[1..parts.len() - 1] {
        match rest.find(middle) {
            Some(at) => rest = &rest[at + middle.len()..],
            None => return false,
        }
    }
    true
}

/// `EXPLAIN SYNC name` or `EXPLAIN CREATE SYNC ...`
#[derive(Debug, Clone, PartialEq)]
pub enum ExplainSync {
    /// `EXPLAIN SYNC name`: an existing sync.
    Named(Ident),
    /// `EXPLAIN CREATE [OR REPLACE] SYNC ...`: a sync definition that is not created.
    Create(Box<CreateSync>),
}

/// One field of `PARTITION BY`: a transform of a target column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionField {
    /// The Iceberg partition transform.
    pub transform: Transform,
    /// The target column (a name from the `SELECT` list).
    pub column: Ident,
}

/// An Iceberg partition transform.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transform {
    /// `c` or `identity(c)`
    Identity,
    /// `year(c)`
    Year,
    /// `month(c)`
    Month,
    /// `day(c)`
    Day,
    /// `hour(c)`
    Hour,
    /// `bucket(n, c)`: hash into `n` buckets.
    Bucket(u32),
    /// `truncate(w, c)`: truncate to width `w`.
    Truncate(u32),
}

impl Transform {
    /// The names of all transforms, as written in SQL.
    pub const NAMES: [&'static str; 7] =
        ["identity", "year", "month", "day", "hour", "bucket", "truncate"];
}

impl fmt::Display for Statement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Statement::Attach(attach) => attach.fmt(f),
            Statement::CreateSync(sync) => sync.fmt(f),
            Statement::DropSync { name, purge, if_exists } => {
                let if_exists = if *if_exists { "IF EXISTS " } else { "" };
                let purge = if *purge { " PURGE" } else { "" };
                write!(f, "DROP SYNC {if_exists}{name}{purge}")
            }
            Statement::StartSync { name } => write!(f, "START SYNC {name}"),
            Statement::StopSync { name } => write!(f, "STOP SYNC {name}"),
            Statement::RefreshSync { name } => write!(f, "REFRESH SYNC {name}"),
            Statement::CheckSync { name } => write!(f, "CHECK SYNC {name}"),
            Statement::ShowSyncs => f.write_str("SHOW SYNCS"),
            Statement::ShowSyncStatus { name } => {
                f.write_str("SHOW SYNC STATUS")?;
                write_optional(f, " ", name)
            }
            Statement::ExplainSync(ExplainSync::Named(name)) => write!(f, "EXPLAIN SYNC {name}"),
            Statement::ExplainSync(ExplainSync::Create(sync)) => write!(f, "EXPLAIN {sync}"),
            Statement::Optimize(optimize) => write!(f, "{optimize}"),
            Statement::Vacuum(vacuum) => write!(f, "{vacuum}"),
            Statement::ShowDatabases { from } => {
                f.write_str("SHOW DATABASES")?;
                write_optional(f, " FROM ", from)
            }
            Statement::ShowCollections { from } => {
                f.write_str("SHOW COLLECTIONS")?;
                write_optional(f, " FROM ", from)
            }
            Statement::ShowTables { from } => {
                f.write_str("SHOW TABLES")?;
                write_optional(f, " FROM ", from)
            }
            Statement::Describe { name } => write!(f, "DESCRIBE {name}"),
            Statement::Sql(statement) => statement.fmt(f),
        }
    }
}

fn write_optional(
    f: &mut fmt::Formatter<'_>,
    prefix: &str,
    value: &Option<impl fmt::Display>,
) -> fmt::Result {
    match value {
        Some(value) => write!(f, "{prefix}{value}"),
        None => Ok(()),
    }
}

impl fmt::Display for Attach {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Attach { uri, name, kind, options } = self;
        write!(f, "ATTACH {} AS {name} (TYPE {}", quote_string(uri), kind.name())?;
        for (key, value) in options {
            write!(f, ", {} {}", quote_key(key), quote_string(value))?;
        }
        f.write_str(")")
    }
}

/// An option key as SQL: bare when it reads back as the same key, double-quoted otherwise.
pub(crate) fn quote_key(key: &str) -> String {
    let bare = key.split(['.', '-']).all(|part| {
        let mut chars = part.chars();
        chars.next().is_some_and(|c| c.is_ascii_lowercase() || c == '_')
            && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    });
    if bare { key.to_string() } else { format!("\"{}\"", key.replace('"', "\"\"")) }
}

impl fmt::Display for CreateSync {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CREATE ")?;
        if self.or_replace {
            f.write_str("OR REPLACE ")?;
        }
        f.write_str("SYNC ")?;
        if self.if_not_exists {
            f.write_str("IF NOT EXISTS ")?;
        }
        write!(f, "{} FROM {}", self.name, self.source)?;
        if let Some(pattern) = &self.collections {
            write!(f, ".{}", pattern.glob)?;
            if !pattern.exclude.is_empty() {
                let names: Vec<String> = pattern.exclude.iter().map(|n| name_or_glob(n)).collect();
                write!(f, " EXCLUDE ({})", names.join(", "))?;
            }
        }
        write!(f, " INTO {}", self.target)?;
        if let Some(items) = &self.projection {
            write!(f, " SELECT {}", comma_separated(items))?;
        }
        write_optional(f, " WHERE ", &self.selection)?;
        if !self.partition_by.is_empty() {
            write!(f, " PARTITION BY {}", comma_separated(&self.partition_by))?;
        }
        if !self.options.given.is_empty() {
            write!(f, " WITH ({})", self.options)?;
        }
        Ok(())
    }
}

impl fmt::Display for PartitionField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let column = &self.column;
        match self.transform {
            Transform::Identity => write!(f, "{column}"),
            Transform::Year => write!(f, "year({column})"),
            Transform::Month => write!(f, "month({column})"),
            Transform::Day => write!(f, "day({column})"),
            Transform::Hour => write!(f, "hour({column})"),
            Transform::Bucket(n) => write!(f, "bucket({n}, {column})"),
            Transform::Truncate(w) => write!(f, "truncate({w}, {column})"),
        }
    }
}

fn comma_separated<T: fmt::Display>(items: &[T]) -> String {
    items.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
}
