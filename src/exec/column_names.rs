//! Result columns read from a nested field are named by the field's path (`customer.name`),
//! not by DataFusion's text for the expression (`mongo.shop.orders.customer[name]`).

use std::collections::HashSet;

use datafusion::common::Column;
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
    let schema = plan.schema().clone();
    let mut taken: HashSet<String> = schema.fields().iter().map(|f| f.name().clone()).collect();
    let mut renamed = false;
    let exprs: Vec<Expr> = schema
        .iter()
        .map(|(qualifier, field)| {
            let column = Expr::Column(Column::new(qualifier.cloned(), field.name()));
            match path_name(field.name()) {
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
    use super::path_name;

    #[test]
    fn names_nested_fields_by_their_path() {
        assert_eq!(path_name("mongo.shop.orders.customer[name]").as_deref(), Some("customer.name"));
        assert_eq!(path_name("customer[address][city]").as_deref(), Some("customer.address.city"));
        assert_eq!(path_name("total"), None);
        assert_eq!(path_name("count(*)"), None);
        assert_eq!(path_name("items[1]x"), None);
    }
}
