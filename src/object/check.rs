//! What `jfs format` asks of a storage before a volume is written to it:
//! that objects can be written, read back, listed and deleted, and that the
//! bucket does not already hold another volume. The volume's uuid is then
//! kept in the bucket (`jfs-volume.uuid`), so the next format sees it.

use super::{ObjectError, ObjectResult, ObjectStore};

/// The object naming the volume a bucket holds.
pub const UUID_OBJECT: &str = "jfs-volume.uuid";

/// Checks `store` can hold volume `uuid`; with `force`, a bucket holding
/// another volume is taken over. Errors say what failed and what to do.
pub async fn check_storage(store: &dyn ObjectStore, uuid: &str, force: bool) -> ObjectResult<()> {
    let probe = format!("jfs-check-{:016x}", fastrand::u64(..));
    let payload = b"jfs storage check".to_vec();
    let step = |what: &str, e: ObjectError| match e {
        ObjectError::Auth(m) => ObjectError::Auth(m),
        other => ObjectError::Fatal(format!(
            "storage check failed at {what} on {}: {other}",
            store.describe()
        )),
    };
    store
        .put(&probe, payload.clone().into())
        .await
        .map_err(|e| step("writing a test object", e))?;
    let back = store
        .get(&probe)
        .await
        .map_err(|e| step("reading the test object back", e))?;
    if back != payload {
        return Err(ObjectError::Fatal(format!(
            "{} returned different bytes than were written",
            store.describe()
        )));
    }
    let listed = store
        .list(&probe, None, 1)
        .await
        .map_err(|e| step("listing", e))?;
    if listed.first().map(|o| o.key.as_str()) != Some(probe.as_str()) {
        return Err(ObjectError::Fatal(format!(
            "{} does not list the object just written",
            store.describe()
        )));
    }
    store
        .delete(&probe)
        .await
        .map_err(|e| step("deleting the test object", e))?;
    match store.get(UUID_OBJECT).await {
        Ok(existing) => {
            let existing = String::from_utf8_lossy(&existing).trim().to_string();
            if existing != uuid && !force {
                return Err(ObjectError::Fatal(format!(
                    "{} already holds volume {existing}: use another bucket, or --force to take it over",
                    store.describe()
                )));
            }
        }
        Err(ObjectError::NotFound(_)) => {}
        Err(e) => return Err(step("reading the volume uuid", e)),
    }
    store
        .put(UUID_OBJECT, uuid.as_bytes().to_vec().into())
        .await
        .map_err(|e| step("writing the volume uuid", e))
}
