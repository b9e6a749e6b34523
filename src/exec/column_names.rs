//! Result columns read from a nested field are named by the field's path (`customer.name`),
//! not by DataFusion's text for the expression (`mongo.shop.orders.customer[name]`); an
//! expression over a table's columns drops the table's name from its own (`sum(total)`, not
//! `sum(mongo.shop.orders.total)`).

use std::collections::HashSet;

use datafusion::common::Column;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::logical_expr::{Expr, LogicalPlan, LogicalPlanBuilder};

use crate::Result;

/// `plan` with a last projection that renames its nested-path columns, when it is a query that
/// has any (a name already taken is left as it is).
pub fn name_by_path(plan: LogicalPlan) -> Result<LogicalPlan> {
    if !matches!(
        plan,
        LogicalPlan::Projection(_)
            | LogicalPlan::Sort(_)
            | LogicalPlan::Limit(_)
            | LogicalPlan::Filter(_)
            | LogicalPlan::Aggregate(_)
            | LogicalPlan::Distinct(_)
            | LogicalPlan::Union(_)
    ) {
        return Ok(plan);
    }
    let tables = table_prefixes(&plan)?;
    let schema = plan.schema().clone();
    let mut taken: HashSet<String> = schema.fields().iter().map(|f| f.name().clone()).collect();
    let mut renamed = false;
    let exprs: Vec<Expr> = schema
        .iter()
        .map(|(qualifier, field)| {
            let column = Expr::Column(Column::new(qualifier.cloned(), field.name()));
            let name = path_name(field.name()).or_else(|| unqualified(field.name(), &tables));
            match name {
                Some(path) if taken.insert(path.clone()) => {
                    renamed = true;
                    column.alias(path)
                }
                _ => column,
            }
        })
        .collect();
    if !renamed {
        return Ok(plan);
    }
    Ok(LogicalPlanBuilder::from(plan).project(exprs)?.build()?)
}

/// `catalog.schema.table.` of every table `plan` scans.
fn table_prefixes(plan: &LogicalPlan) -> Result<Vec<String>> {
    let mut tables = Vec::new();
    plan.apply(|node| {
        if let LogicalPlan::TableScan(scan) = node {
            tables.push(format!("{}.", scan.table_name));
        }
        Ok(TreeNodeRecursion::Continue)
    })?;
    Ok(tables)
}

/// `name` without the `tables` prefixes of the columns it names (`sum(total)` for
/// `sum(mongo.shop.orders.total)`); `None` when it names none.
fn unqualified(name: &str, tables: &[String]) -> Option<String> {
    let mut out = name.to_string();
    for table in tables {
        out = out.replace(table.as_str(), "");
    }
    (out != name && !out.is_empty()).then_some(out)
}

/// `customer.address.city` for `mongo.shop.orders.customer[address][city]` (or
/// `customer[address][city]`); `None` for a name that is not a field access.
pub fn path_name(name: &str) -> Option<String> {
    let open = name.find('[')?;
    let column = name[..open].rsplit('.').next().filter(|c| !c.is_empty())?;
    let mut path = column.to_string();
    let mut rest = &name[open..];
    while !rest.is_empty() {
        let inner = rest.strip_prefix('[')?;
        let close = inner.find(']')?;
        let segment = &inner[..close];
        if segment.is_empty() || segment.contains('[') {
            return None;
        }
        path.push('.');
        path.push_str(segment);
        rest = &inner[close + 1..];
    }
    Some(path)
}

#[cfg(test)]
mod tests {
    use super::{path_name, unqualified};

    #[test]
    fn names_nested_fields_by_their_path() {
        assert_eq!(path_name("mongo.shop.orders.customer[name]").as_deref(), Some("customer.name"));
        assert_eq!(path_name("customer[address][city]").as_deref(), Some("customer.address.city"));
        assert_eq!(path_name("total"), None);
        assert_eq!(path_name("count(*)"), None);
        assert_eq!(path_name("items[1]x"), None);
    }

    #[test]
    fn an_expression_drops_the_table_names_of_its_columns() {
        let tables = ["mongo.shop.orders.".to_string()];
        let name = "sum(mongo.shop.orders.total) + max(mongo.shop.orders.n)";
        assert_eq!(unqualified(name, &tables).as_deref(), Some("sum(total) + max(n)"));
        assert_eq!(unqualified("count(*)", &tables), None);
    }
}
