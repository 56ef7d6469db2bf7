use layers_store::testing::TestDatabase;
use layers_store::{connect, ConnectOptions, StoreError};

async fn unmigrated_then_migrated(db: TestDatabase) {
    let store = connect(&ConnectOptions { url: db.url.clone(), max_connections: 1, app_role: None }).await.unwrap();
    let err = store.check_migrated().await.unwrap_err();
    assert!(matches!(err, StoreError::NotMigrated { pending } if pending >= 1), "{err:?}");
    store.migrate().await.unwrap();
    store.check_migrated().await.unwrap();
    // Migrating again is a no-op.
    store.migrate().await.unwrap();
}

#[tokio::test]
async fn sqlite_refuses_an_unmigrated_database() {
    unmigrated_then_migrated(TestDatabase::sqlite()).await;
}

#[tokio::test]
async fn postgres_refuses_an_unmigrated_database() {
    let Some(db) = TestDatabase::postgres().await else { return };
    unmigrated_then_migrated(db).await;
}
