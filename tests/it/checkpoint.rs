//! The checkpoint a sync resumes from: read whole from one snapshot's summary; and a deployment
//! without change streams, which is copied once.

use std::collections::HashMap;

use bson::{Document, doc};
use iceberg::{NamespaceIdent, TableIdent};
use misql::lake::catalog::connect;
use misql::sync::checkpoint::{Checkpoint, DEFINITION, PHASE, RESUME_TOKEN, SYNC};
use misql::sync::sink::checkpoint_of;

use crate::support::commit::append;
use crate::support::server::start_private;
use crate::support::{misql_in, unique_db, warehouse};

fn items(n: i64) -> Vec<Document> {
    (0..n).map(|i| doc! { "_id": i, "n": i }).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_checkpoint_is_read_from_one_summary_never_a_key_from_an_older_commit() {
    let db = unique_db("cpwhole");
    crate::support::data::load(&db, "items", &items(20)).await;
    let dir = warehouse("cpwhole");
    let sync = format!("CREATE SYNC w FROM mongo.{db}.items INTO iceberg.{db}.items SELECT _id, n");
    let run = misql_in(&dir, &["--once", "-e", &sync]);
    assert!(run.success, "{}", run.stderr);
    let conn = connect(&dir.display().to_string(), &[]).await.unwrap();
    let ident = TableIdent::new(NamespaceIdent::new(db.clone()), "items".into());
    let table = conn.catalog.load_table(&ident).await.unwrap();
    let before = checkpoint_of(&table).unwrap().expect("the sync's checkpoint");
    assert!(before.resume_token.is_some(), "the sync saved a resume token");
    // A later commit of the same sync whose summary has no resume token.
    let summary = table.metadata().current_snapshot().unwrap().summary();
    let keep = [SYNC, DEFINITION, PHASE];
    let properties: HashMap<String, String> = summary
        .additional_properties
        .iter()
        .filter(|(k, _)| keep.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let table = append(&conn, &table, Vec::new(), properties).await.unwrap();
    let after: Checkpoint = checkpoint_of(&table).unwrap().expect("a checkpoint");
    assert_eq!(after.sync, before.sync);
    assert_eq!(
        after.resume_token, None,
        "the token of an older commit was taken into the newest checkpoint"
    );
    assert!(!after.to_properties().contains_key(RESUME_TOKEN));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deployment_without_change_streams_is_copied_once_and_says_so() {
    let private = start_private(&["--enable-test-commands"]);
    let client = mongodb::Client::with_uri_str(&private.uri).await.unwrap();
    let db = unique_db("nostream");
    client.database(&db).collection::<Document>("items").insert_many(items(30)).await.unwrap();
    // Every aggregate after the sampling one (the change stream's) fails as on a standalone
    // mongod.
    let failpoint = doc! {
        "configureFailPoint": "failCommand",
        "mode": { "skip": 1 },
        "data": { "failCommands": ["aggregate"], "errorCode": 40573 },
    };
    client.database("admin").run_command(failpoint).await.unwrap();
    let dir = warehouse("nostream");
    let sync = format!("CREATE SYNC s FROM mongo.{db}.items INTO iceberg.{db}.items SELECT _id, n");
    let run = misql_in(&dir, &["--mongodb-uri", &private.uri, "--once", "-e", &sync]);
    assert!(run.success, "{}", run.stderr);
    assert!(run.stderr.contains("has no change streams"), "{}", run.stderr);
    let uri = ["--mongodb-uri", private.uri.as_str()];
    let count = format!("SELECT count(*) AS n FROM iceberg.{db}.items");
    let rows = crate::support::json_rows_with(&dir, &uri, &count);
    assert_eq!(rows[0]["n"], 30, "the collection is copied");
}
