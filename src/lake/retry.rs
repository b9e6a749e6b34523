//! Trying a request that is safe to repeat (a token exchange, a catalog's config, loading a
//! table) again where it failed, a few times with jitter inside a deadline, before its error
//! reaches the sync (which would start over from its checkpoint). Commits are not retried
//! here: an unknown outcome is settled by reading the table back (see `commit`).

use std::future::Future;
use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

use ::iceberg::table::Table;
use ::iceberg::{Catalog, TableIdent};
use tokio::time::Instant;

use crate::{Error, Result};

/// Tries of one request, the first included.
pub const ATTEMPTS: u32 = 4;
/// The first wait between tries; doubled after each.
pub const FIRST_WAIT: Duration = Duration::from_millis(200);
/// No try starts after this long from the first.
pub const DEADLINE: Duration = Duration::from_secs(10);

/// Runs `request` until it succeeds, fails with an error that is not transient, or
/// [`ATTEMPTS`] tries or [`DEADLINE`] are used up; waits [`FIRST_WAIT`], doubled each time, with
/// up to as much again at random, between tries. `what` names the request in the log.
pub async fn retry_transient<T, F, Fut>(what: &str, mut request: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let deadline = Instant::now() + DEADLINE;
    let mut wait = FIRST_WAIT;
    let mut attempt = 1;
    loop {
        let err = match request().await {
            Err(err) if err.is_transient() && attempt < ATTEMPTS => err,
            result => return result,
        };
        let pause = wait + jitter(wait);
        if Instant::now() + pause > deadline {
            return Err(err);
        }
        tracing::debug!(
            "{what} failed ({}); trying again in {} ms",
            err.user_facing(),
            pause.as_millis()
        );
        tokio::time::sleep(pause).await;
        wait *= 2;
        attempt += 1;
    }
}

/// The table `name` as `catalog` has it now; a load that fails for a moment is tried again.
pub async fn load_table(catalog: &dyn Catalog, name: &TableIdent) -> Result<Table> {
    retry_transient(&format!("loading {name}"), || async {
        catalog.load_table(name).await.map_err(|e| Error::iceberg(format!("loading {name}"), e))
    })
    .await
}

/// A random duration below `up_to` (so that clients failed together do not retry together).
fn jitter(up_to: Duration) -> Duration {
    let random = std::collections::hash_map::RandomState::new().build_hasher().finish();
    let millis = u64::try_from(up_to.as_millis()).unwrap_or(u64::MAX).max(1);
    Duration::from_millis(random % millis)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    fn unavailable() -> Error {
        Error::Unavailable { message: "the catalog answered 503".into(), hint: None }
    }

    #[tokio::test]
    async fn a_transient_failure_is_tried_again_until_it_gets_through() {
        let tries = AtomicU32::new(0);
        let result = retry_transient("a request", || async {
            match tries.fetch_add(1, Ordering::SeqCst) {
                0 | 1 => Err(unavailable()),
                _ => Ok(7),
            }
        })
        .await;
        assert_eq!(result.ok(), Some(7));
        assert_eq!(tries.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn a_permanent_failure_is_returned_at_once_and_tries_are_bounded() {
        let tries = AtomicU32::new(0);
        let result: Result<()> = retry_transient("a request", || async {
            tries.fetch_add(1, Ordering::SeqCst);
            Err(Error::user("refused"))
        })
        .await;
        assert!(result.is_err());
        assert_eq!(tries.load(Ordering::SeqCst), 1);

        let tries = AtomicU32::new(0);
        let result: Result<()> = retry_transient("a request", || async {
            tries.fetch_add(1, Ordering::SeqCst);
            Err(unavailable())
        })
        .await;
        assert!(result.is_err_and(|e| e.is_transient()));
        assert_eq!(tries.load(Ordering::SeqCst), ATTEMPTS);
    }

    #[test]
    fn jitter_stays_below_its_bound() {
        for _ in 0..100 {
            assert!(jitter(Duration::from_millis(200)) < Duration::from_millis(200));
        }
    }
}
