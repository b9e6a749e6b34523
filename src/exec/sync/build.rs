//! Planning a sync and preparing what it needs (source, target catalog, plan), from the session
//! or detached from it (a database sync builds the syncs of its collections).

use std::sync::Arc;

use super::ONCE_ATTEMPTS;
use crate::exec::Session;
use crate::sql::{CreateSync, DeleteMode, SyncOption};
use crate::sync::SyncTask;
use crate::sync::plan::SyncPlan;
use crate::sync::target::table_ident;
use crate::{Error, Result};

/// What planning and preparing a sync needs from the session, detached from it so that a
/// database sync can build the sync of a collection created while it runs.
#[derive(Clone)]
pub struct SyncBuilder {
    ctx: datafusion::prelude::SessionContext,
    mongo: std::collections::BTreeMap<String, Arc<crate::mongo::client::MongoSource>>,
    iceberg: std::collections::BTreeMap<String, Arc<crate::catalog::iceberg::LazyIceberg>>,
    registry: crate::sync::status::Registry,
    sample_override: crate::mongo::client::SampleSizeOverride,
    stop: tokio_util::sync::CancellationToken,
}

impl SyncBuilder {
    /// Plans a sync and prepares everything it needs, without running it.
    pub async fn build(&self, create: &CreateSync) -> Result<SyncTask> {
        if create.options.delete_mode == DeleteMode::Equality {
            return Err(Error::user(format!(
                "sync {}: delete_mode = 'equality' is not supported yet; misql writes position \
                 deletes, which every Iceberg reader applies",
                create.name
            ))
            .with_hint("leave the option out, or write delete_mode = 'position'"));
        }
        let (source, database, collection) =
            crate::exec::mongo_collection(&self.mongo, &create.source)?.ok_or_else(|| {
                Error::user(format!(
                    "the source of sync {} must be a MongoDB collection",
                    create.name
                ))
                .with_hint(format!(
                    "attached MongoDB deployments: {}",
                    self.mongo.keys().cloned().collect::<Vec<_>>().join(", ")
                ))
            })?;
        let parts = crate::exec::name_parts(&create.target);
        let catalog =
            crate::exec::iceberg_catalog(&self.iceberg, parts.first().map(String::as_str))?;
        let connection = catalog.get().await?.clone();
        let plan = self.plan_with_sample_size(create).await?;
        if !plan.evolving && create.options.given.contains(&SyncOption::OnTypeChange) {
            return Err(Error::user(format!(
                "sync {}: on_type_change applies to SELECT * syncs only; its SELECT list fixes \
                 the columns",
                create.name
            ))
            .with_hint(
                "a value that does not fit its column follows on_error; remove on_type_change, \
                 or use SELECT * to let the table follow the documents",
            ));
        }
        Ok(SyncTask {
            name: create.name.value.clone(),
            create: create.clone(),
            plan: std::sync::RwLock::new(std::sync::Arc::new(plan)),
            source,
            database,
            collection,
            catalog: connection.catalog.clone(),
            connection,
            target: table_ident(create),
            registry: self.registry.clone(),
            maintenance: Default::default(),
            stop: self.stop.child_token(),
            refresh: Default::default(),
            feed: None,
        })
    }

    /// Plans `create`, sampling `WITH (sample_size = N)` documents when the option is given.
    async fn plan_with_sample_size(&self, create: &CreateSync) -> Result<SyncPlan> {
        if !create.options.given.contains(&SyncOption::SampleSize) {
            return SyncPlan::new(&self.ctx, create).await;
        }
        let _scoped = self.sample_override.scoped(create.options.sample_size);
        SyncPlan::new(&self.ctx, create).await
    }
}

impl Session {
    /// What building a sync needs, detached from the session.
    pub(in crate::exec) fn builder(&self) -> SyncBuilder {
        SyncBuilder {
            ctx: self.ctx.clone(),
            mongo: self.mongo.clone(),
            iceberg: self.iceberg.clone(),
            registry: self.registry.clone(),
            sample_override: self.sample_override.clone(),
            stop: self.stop.clone(),
        }
    }

    /// Plans a sync and prepares everything it needs, without running it.
    pub(in crate::exec) async fn build_sync(&self, create: &CreateSync) -> Result<SyncTask> {
        self.builder().build(create).await
    }

    /// [`Self::build_sync`], retried while the server or catalog is unavailable (planning
    /// samples the collection and opens the target catalog): backoff 1, 2, 4, 8 s.
    pub(super) async fn build_sync_with_retries(&self, create: &CreateSync) -> Result<SyncTask> {
        let mut backoff = std::time::Duration::from_secs(1);
        for _ in 1..ONCE_ATTEMPTS {
            match self.build_sync(create).await {
                Err(err) if err.is_transient() => {
                    tracing::warn!(
                        "sync {}: {}; retrying in {}s",
                        create.name,
                        err.user_facing(),
                        backoff.as_secs()
                    );
                    tokio::time::sleep(backoff).await;
                    backoff *= 2;
                }
                result => return result,
            }
        }
        self.build_sync(create).await
    }
}
