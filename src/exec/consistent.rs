//! `SET misql.consistent_reads = true`: a query reads every Iceberg table a sync keeps at the
//! snapshot of the newest cluster time at which all of the tables it reads are exact (see
//! [`crate::sync::cuts`]), so a MongoDB transaction over several collections is seen whole or
//! not at all, even where the catalog commits each table on its own.

use std::sync::Arc;

use datafusion::sql::TableReference;
use datafusion::sql::parser::Statement as DfStatement;
use iceberg::{NamespaceIdent, TableIdent};
use sqlparser::ast::{Expr, Reset, Set, Statement as Sql, Value};

use super::Session;
use crate::catalog::iceberg::LazyIceberg;
use crate::sync::cuts::{newest_common, spans};
use crate::{Error, Result};

/// The setting's name.
pub(super) const SETTING: &str = "misql.consistent_reads";

/// `SET misql.consistent_reads = true|false` (`Some(value)`), `RESET` (`Some(false)`); `None`
/// for another statement.
pub(super) fn setting(statement: &Sql) -> Result<Option<bool>> {
    let is_ours = |name: &str| name.eq_ignore_ascii_case(SETTING);
    match statement {
        Sql::Set(Set::SingleAssignment { variable, values, .. })
            if is_ours(&variable.to_string()) =>
        {
            let on = match values.as_slice() {
                [Expr::Value(value)] => match &value.value {
                    Value::Boolean(on) => Some(*on),
                    Value::SingleQuotedString(text) => text.parse().ok(),
                    _ => None,
                },
                [Expr::Identifier(ident)] => ident.value.to_ascii_lowercase().parse().ok(),
                _ => None,
            };
            on.map(Some).ok_or_else(|| {
                Error::user(format!("{SETTING} is true or false"))
                    .with_hint(format!("SET {SETTING} = true"))
            })
        }
        Sql::Reset(reset) => match &reset.reset {
            Reset::ConfigurationParameter(name) if is_ours(&name.to_string()) => Ok(Some(false)),
            _ => Ok(None),
        },
        _ => Ok(None),
    }
}

/// Whether `statement` is `SHOW misql.consistent_reads`.
pub(super) fn is_show(statement: &Sql) -> bool {
    match statement {
        Sql::ShowVariable { variable } => {
            let name: Vec<&str> = variable.iter().map(|i| i.value.as_str()).collect();
            name.join(".").eq_ignore_ascii_case(SETTING)
        }
        _ => false,
    }
}

/// Pins every Iceberg table `statement` reads to its snapshot at the newest common exact time;
/// returns the catalogs to unpin once the statement is planned.
pub(super) async fn pin(session: &Session, statement: &Sql) -> Result<Vec<Arc<LazyIceberg>>> {
    let state = session.ctx.state();
    let references =
        state.resolve_table_references(&DfStatement::Statement(Box::new(statement.clone())))?;
    let config = state.config_options();
    let (catalog, schema) = (&config.catalog.default_catalog, &config.catalog.default_schema);
    let mut tables = Vec::new();
    for reference in references {
        if let Some(table) = iceberg_table(session, &reference.resolve(catalog, schema)) {
            tables.push(table);
        }
    }
    if tables.is_empty() {
        return Ok(Vec::new());
    }
    let (mut all, mut loaded) = (Vec::new(), Vec::new());
    for (catalog, ident, name) in &tables {
        let connection = catalog.get().await?;
        let table = connection
            .catalog
            .load_table(ident)
            .await
            .map_err(|e| Error::iceberg(format!("loading {name}"), e))?;
        all.push(spans(&table));
        loaded.push(table);
    }
    let names = || tables.iter().map(|(_, _, name)| name.as_str()).collect::<Vec<_>>().join(", ");
    let Some((_, snapshots)) = newest_common(&all) else {
        return Err(Error::user(format!(
            "{SETTING}: {} have no cluster time at which all are exact yet (a table a sync \
             keeps is, once the sync has committed a batch while streaming)",
            names()
        ))
        .with_hint(format!("read them as they are now: SET {SETTING} = false")));
    };
    for (((catalog, _, _), table), snapshot) in tables.iter().zip(loaded).zip(snapshots) {
        catalog.pin(table, snapshot); // planning reads the table as loaded here
    }
    Ok(tables.into_iter().map(|(catalog, _, _)| catalog).collect())
}

/// The Iceberg catalog, identifier and name of `reference`, when it names an Iceberg table.
fn iceberg_table(
    session: &Session,
    reference: &datafusion::sql::ResolvedTableReference,
) -> Option<(Arc<LazyIceberg>, TableIdent, String)> {
    let catalog = session.iceberg.get(reference.catalog.as_ref())?.clone();
    let namespace = NamespaceIdent::new(reference.schema.to_string());
    let ident = TableIdent::new(namespace, reference.table.to_string());
    let name = TableReference::from(reference.clone()).to_string();
    Some((catalog, ident, name))
}
